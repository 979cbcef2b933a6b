//! The smart plug over MQTT: commands (`payload_on`/`payload_off` on `command_topic`, QoS 1,
//! never retained), its state (`state_topic`, optional JSON field) and measured power
//! (`power_topic`, optional JSON field), and the [`Workload`] the scheduler drives.
//!
//! Fail cold. On a zero target or an expired deadline the plug is commanded off at once
//! (whatever the minimum on time). When the broker is lost nothing can be commanded: the plug's
//! state becomes unknown, and on reconnection the first message is the off command; control
//! resumes only once the plug confirms off on its state topic (without one: once the broker has
//! acknowledged the off command). Until the plug is confirmed off the element counts as drawing
//! its full power. The client's last will is the off command too, so a broker that loses hearth
//! (a crash, a cut network) switches the plug off itself. Retained messages (kept by the broker
//! from before, of unknown age) are never taken as the plug's state or power.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::{watch, Notify};

use super::duty::{DutyTiming, TimeProportioning};
use crate::clock::Clock;
use crate::config::ResistiveConfig;
use crate::home::sensors::{payload_number, payload_value};
use crate::home::session::{self, Link, Session};
use crate::sched::allocator::Envelope;
use crate::sched::workload::{Source, Workload};

/// The plausible range of a plug's power reading, W.
const POWER_RANGE: std::ops::RangeInclusive<f64> = 0.0..=100_000.0;

/// A command the plug has not obeyed (its state topic says otherwise) is sent again after this
/// long, schedule seconds.
const RESEND_S: f64 = 10.0;

/// Whether a state payload says on (`Some(true)`), off, or neither: the configured payloads and
/// the usual words (`ON`/`OFF` of Tasmota and zigbee2mqtt, `on`/`off` of Shelly,
/// `true`/`false`, `1`/`0`), in any case.
pub fn parse_state(value: &str, payload_on: &str, payload_off: &str) -> Option<bool> {
    let is = |words: [&str; 4]| words.iter().any(|w| value.eq_ignore_ascii_case(w));
    if is([payload_on, "on", "true", "1"]) {
        Some(true)
    } else if is([payload_off, "off", "false", "0"]) {
        Some(false)
    } else {
        None
    }
}

/// What hearth knows of the plug and wants of it.
#[derive(Debug)]
struct PlugState {
    /// The target, W, and until when it holds (schedule seconds).
    target_watts: f64,
    valid_until_s: f64,
    duty: TimeProportioning,
    connected: bool,
    /// The last command queued on this connection.
    commanded: Option<bool>,
    /// Commands the broker has not acknowledged yet.
    unacked: u32,
    /// When the last command was queued.
    sent_at_s: f64,
    /// The plug's own word on this connection, from its state topic.
    reported: Option<bool>,
    /// Its measured power on this connection, W, and when it came.
    measured: Option<(f64, f64)>,
    /// When the commanded or reported state last changed: older power readings are not of it.
    changed_at_s: f64,
    /// Set on each connection until the plug is confirmed off; control waits for it.
    awaiting_off: bool,
}

impl PlugState {
    fn new(timing: DutyTiming) -> Self {
        Self {
            target_watts: 0.0,
            valid_until_s: f64::NEG_INFINITY,
            duty: TimeProportioning::new(timing),
            connected: false,
            commanded: None,
            unacked: 0,
            sent_at_s: f64::NEG_INFINITY,
            reported: None,
            measured: None,
            changed_at_s: f64::NEG_INFINITY,
            awaiting_off: true,
        }
    }

    /// Whether the plug is known to be off: it says so on its state topic (and has not been
    /// told to switch on since), or, without a state topic, the broker took the off command.
    fn confirmed_off(&self, has_state_topic: bool) -> bool {
        if !self.connected {
            return false;
        }
        if has_state_topic {
            self.reported == Some(false) && self.commanded != Some(true)
        } else {
            self.commanded == Some(false) && self.unacked == 0
        }
    }

    /// Its power now, W: the measured power when a reading has come since the last switch,
    /// else its full power unless it is known to be off.
    fn actual(&self, max_watts: f64, has_state_topic: bool) -> (f64, Source) {
        let fresh = self
            .measured
            .filter(|&(_, at)| self.connected && at >= self.changed_at_s);
        let off = self.confirmed_off(has_state_topic);
        let on = self.connected && (self.commanded == Some(true) || self.reported == Some(true));
        match fresh {
            Some((w, _)) if off || on => (w, Source::Measured),
            _ if off => (0.0, Source::Modelled),
            _ => (max_watts, Source::Modelled),
        }
    }

    /// Forgets everything learnt on a connection (a new one starts, or it was lost).
    fn reset(&mut self, now_s: f64, connected: bool) {
        self.connected = connected;
        self.commanded = None;
        self.unacked = 0;
        self.reported = None;
        self.measured = None;
        self.changed_at_s = now_s;
        self.awaiting_off = true;
        self.duty.force_off(now_s);
    }
}

/// A resistive element behind a smart plug: the workload the scheduler drives, sharing its state
/// with the MQTT session that switches the plug.
pub struct MqttPlug {
    state: Arc<Mutex<PlugState>>,
    wake: Arc<Notify>,
    clock: Clock,
    max_watts: f64,
    has_state_topic: bool,
}

impl MqttPlug {
    fn lock(&self) -> std::sync::MutexGuard<'_, PlugState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the plug is known to be off (see the module's doc).
    pub fn confirmed_off(&self) -> bool {
        self.lock().confirmed_off(self.has_state_topic)
    }
}

impl Workload for MqttPlug {
    fn name(&self) -> &'static str {
        "resistive"
    }

    fn envelope(&self) -> Envelope {
        crate::devices::resistive::envelope(self.max_watts)
    }

    fn has_work(&self) -> bool {
        true
    }

    fn actual_watts(&self) -> (f64, Source) {
        self.lock().actual(self.max_watts, self.has_state_topic)
    }

    fn set_target(&self, watts: f64, valid_for: Duration) {
        let now = self.clock.now_s();
        {
            let mut s = self.lock();
            s.target_watts = if watts.is_finite() {
                watts.clamp(0.0, self.max_watts)
            } else {
                0.0
            };
            s.valid_until_s = now + self.clock.schedule_seconds(valid_for);
        }
        self.wake.notify_one();
    }
}

/// The plug's side of the MQTT session.
struct PlugSession {
    cfg: ResistiveConfig,
    state: Arc<Mutex<PlugState>>,
    clock: Clock,
}

impl PlugSession {
    fn lock(&self) -> std::sync::MutexGuard<'_, PlugState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the command `on`; the state records it only if the client took it.
    fn command(&self, s: &mut PlugState, client: &AsyncClient, on: bool, now: f64) {
        let payload = if on {
            &self.cfg.payload_on
        } else {
            &self.cfg.payload_off
        };
        let topic = self.cfg.command_topic.clone();
        match client.try_publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()) {
            Ok(()) => {
                if s.commanded != Some(on) {
                    tracing::info!(plug = %self.cfg.command_topic, on, "plug commanded");
                    s.changed_at_s = now;
                }
                s.commanded = Some(on);
                s.unacked += 1;
                s.sent_at_s = now;
            }
            Err(e) => {
                tracing::warn!(plug = %self.cfg.command_topic, on, error = %e, "plug command not queued; retrying next tick");
            }
        }
    }

    /// One step: the duty decides, the plug is told when it must change (or did not obey).
    fn step(&self, client: Option<&AsyncClient>) {
        let now = self.clock.now_s();
        let has_state = self.cfg.state_topic.is_some();
        let mut s = self.lock();
        let Some(client) = client else {
            s.duty.force_off(now);
            return;
        };
        let disobeyed = |s: &PlugState, want: bool| {
            has_state && s.reported != Some(want) && now - s.sent_at_s >= RESEND_S
        };
        if s.awaiting_off {
            if s.confirmed_off(has_state) {
                s.awaiting_off = false;
                tracing::info!(plug = %self.cfg.command_topic, "plug confirmed off; control resumes");
            } else {
                if s.commanded != Some(false) || disobeyed(&s, false) {
                    self.command(&mut s, client, false, now);
                }
                return;
            }
        }
        let duty = if now <= s.valid_until_s && self.cfg.max_watts > 0.0 {
            s.target_watts / self.cfg.max_watts
        } else {
            0.0
        };
        let want = s.duty.step(now, duty);
        if s.commanded != Some(want) || disobeyed(&s, want) {
            self.command(&mut s, client, want, now);
        }
    }
}

impl Session for PlugSession {
    fn connected(&mut self, client: &AsyncClient) {
        let now = self.clock.now_s();
        self.lock().reset(now, true);
        for topic in [&self.cfg.state_topic, &self.cfg.power_topic]
            .into_iter()
            .flatten()
        {
            if let Err(e) = client.try_subscribe(topic.clone(), QoS::AtMostOnce) {
                tracing::warn!(%topic, error = %e, "cannot subscribe to the plug");
            }
        }
        // The first word on every connection: off.
        self.step(Some(client));
    }

    fn message(&mut self, topic: &str, payload: &[u8], retained: bool) {
        if retained {
            tracing::debug!(%topic, "ignoring a retained plug message of unknown age");
            return;
        }
        let now = self.clock.now_s();
        let cfg = &self.cfg;
        let mut s = self.lock();
        if cfg.state_topic.as_deref() == Some(topic) {
            let said = payload_value(payload, cfg.state_field.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    parse_state(&v, &cfg.payload_on, &cfg.payload_off).ok_or_else(|| {
                        format!(
                            "{:?} is neither on nor off",
                            v.chars().take(40).collect::<String>()
                        )
                    })
                });
            match said {
                Ok(on) => {
                    if s.reported != Some(on) {
                        tracing::info!(plug = %cfg.command_topic, on, "plug reports");
                        s.changed_at_s = now;
                    }
                    s.reported = Some(on);
                }
                Err(e) => tracing::warn!(%topic, error = %e, "plug state refused"),
            }
        }
        if cfg.power_topic.as_deref() == Some(topic) {
            match payload_number(payload, cfg.power_field.as_deref(), POWER_RANGE) {
                Ok(w) => s.measured = Some((w, now)),
                Err(e) => tracing::warn!(%topic, error = %e, "plug power refused"),
            }
        }
    }

    fn acked(&mut self) {
        let mut s = self.lock();
        s.unacked = s.unacked.saturating_sub(1);
    }

    fn lost(&mut self) {
        let now = self.clock.now_s();
        let mut s = self.lock();
        if s.connected {
            tracing::warn!(plug = %self.cfg.command_topic, "broker lost: the plug counts as drawing until it confirms off");
        }
        s.reset(now, false);
    }

    fn tick(&mut self, client: Option<&AsyncClient>) {
        self.step(client);
    }

    fn stopping(&mut self, client: Option<&AsyncClient>) -> bool {
        let now = self.clock.now_s();
        let mut s = self.lock();
        s.duty.force_off(now);
        match client {
            Some(c) => {
                self.command(&mut s, c, false, now);
                s.unacked > 0
            }
            None => false,
        }
    }

    fn unacked(&self) -> bool {
        self.lock().unacked > 0
    }
}

/// The plug `cfg` describes (`kind = "mqtt_switch"`, validated) on `link`, and the task that
/// drives it until `shutdown`. The link's last will becomes the plug's off command.
pub fn start(
    cfg: &ResistiveConfig,
    mut link: Link,
    clock: Clock,
    shutdown: watch::Receiver<bool>,
) -> (Arc<MqttPlug>, impl Future<Output = ()> + Send + 'static) {
    let timing = DutyTiming {
        window_s: cfg.window_seconds,
        min_on_s: cfg.min_on_seconds,
        min_off_s: cfg.min_off_seconds,
    };
    let state = Arc::new(Mutex::new(PlugState::new(timing)));
    let wake = Arc::new(Notify::new());
    link.wake = Some(wake.clone());
    link.options.set_last_will(LastWill::new(
        cfg.command_topic.clone(),
        cfg.payload_off.clone().into_bytes(),
        QoS::AtLeastOnce,
        false,
    ));
    let plug = Arc::new(MqttPlug {
        state: state.clone(),
        wake,
        clock: clock.clone(),
        max_watts: cfg.max_watts.max(0.0),
        has_state_topic: cfg.state_topic.is_some(),
    });
    let mut driver = PlugSession {
        cfg: cfg.clone(),
        state,
        clock,
    };
    let task = async move { session::run(link, &mut driver, shutdown).await };
    (plug, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plug that knows nothing yet (the timing does not matter here).
    fn unknown() -> PlugState {
        PlugState::new(DutyTiming {
            window_s: 60.0,
            min_on_s: 0.0,
            min_off_s: 0.0,
        })
    }

    #[test]
    fn states_of_the_usual_plugs_parse() {
        assert_eq!(parse_state("ON", "ON", "OFF"), Some(true));
        assert_eq!(parse_state("off", "ON", "OFF"), Some(false));
        assert_eq!(parse_state("true", "ON", "OFF"), Some(true));
        assert_eq!(parse_state("0", "ON", "OFF"), Some(false));
        assert_eq!(parse_state("heat", "heat", "cool"), Some(true));
        assert_eq!(parse_state("TOGGLE", "ON", "OFF"), None);
    }

    #[test]
    fn counts_as_drawing_until_confirmed_off() {
        let mut s = unknown();
        assert_eq!(
            s.actual(1000.0, true),
            (1000.0, Source::Modelled),
            "unknown at start"
        );
        s.reset(0.0, true);
        s.commanded = Some(false);
        s.unacked = 1;
        assert_eq!(s.actual(1000.0, true).0, 1000.0, "off sent, not confirmed");
        s.reported = Some(false);
        assert_eq!(
            s.actual(1000.0, true),
            (0.0, Source::Modelled),
            "confirmed off"
        );
        s.commanded = Some(true);
        assert_eq!(s.actual(1000.0, true).0, 1000.0, "told to switch on");
        s.changed_at_s = 10.0;
        s.measured = Some((0.0, 5.0));
        assert_eq!(
            s.actual(1000.0, true).0,
            1000.0,
            "a reading from before the switch"
        );
        s.measured = Some((940.0, 12.0));
        assert_eq!(s.actual(1000.0, true), (940.0, Source::Measured));
        s.reset(20.0, false);
        assert_eq!(
            s.actual(1000.0, true),
            (1000.0, Source::Modelled),
            "broker lost"
        );
    }

    #[test]
    fn without_a_state_topic_the_acknowledged_off_command_confirms() {
        let mut s = unknown();
        s.reset(0.0, true);
        s.commanded = Some(false);
        s.unacked = 1;
        assert!(!s.confirmed_off(false));
        assert_eq!(s.actual(800.0, false).0, 800.0);
        s.unacked = 0;
        assert!(s.confirmed_off(false));
        assert_eq!(s.actual(800.0, false).0, 0.0);
        s.commanded = Some(true);
        assert_eq!(s.actual(800.0, false).0, 800.0);
    }
}
