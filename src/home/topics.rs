//! hearth's MQTT topic names: state and command topics under the base topic, discovery topics
//! under Home Assistant's prefix. Every topic string of the link is made here.

/// What a command topic commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandTopic {
    /// Climate mode: `heat` or `off`.
    Mode,
    /// Climate target temperature, °C.
    Target,
    /// Climate preset name, or `none`.
    Preset,
    /// The mix: `auto`, `mining only`, `AI only` or `pinned`.
    Mix,
    /// GPU share of a pinned mix, %.
    GpuShare,
}

impl CommandTopic {
    /// Every command topic.
    pub const ALL: [CommandTopic; 5] = [
        CommandTopic::Mode,
        CommandTopic::Target,
        CommandTopic::Preset,
        CommandTopic::Mix,
        CommandTopic::GpuShare,
    ];

    /// The state topic (relative to the base) this command's outcome shows on.
    pub fn state(self) -> &'static str {
        match self {
            CommandTopic::Mode => "climate/mode",
            CommandTopic::Target => "climate/target",
            CommandTopic::Preset => "climate/preset",
            CommandTopic::Mix => "mix",
            CommandTopic::GpuShare => "gpu_share",
        }
    }
}

/// The topics of one heater.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// hearth's own prefix, e.g. `hearth/dev-0123`.
    pub base: String,
    /// Home Assistant's discovery prefix, e.g. `homeassistant`.
    pub prefix: String,
    /// The node id in discovery topics (the device id, limited to `[A-Za-z0-9_-]`).
    pub node: String,
}

impl Topics {
    /// The topics for `base` and discovery `prefix`, with `device_id` as the node id.
    pub fn new(base: &str, prefix: &str, device_id: &str) -> Self {
        let node = device_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            base: base.to_string(),
            prefix: prefix.to_string(),
            node,
        }
    }

    /// A topic under the base: `<base>/<rel>`.
    pub fn at(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base)
    }

    /// Where hearth says `online` or `offline` (retained; `offline` is also the last will).
    pub fn availability(&self) -> String {
        self.at("availability")
    }

    /// The command topic of `c`: its state topic with `/set`.
    pub fn command(&self, c: CommandTopic) -> String {
        self.at(&format!("{}/set", c.state()))
    }

    /// Which command `topic` is, if it is one of hearth's.
    pub fn command_of(&self, topic: &str) -> Option<CommandTopic> {
        CommandTopic::ALL
            .into_iter()
            .find(|c| self.command(*c) == topic)
    }

    /// Home Assistant's status topic (`online` when it (re)starts).
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The discovery config topic of one entity: `<prefix>/<component>/<node>/<object>/config`.
    pub fn config(&self, component: &str, object: &str) -> String {
        format!("{}/{component}/{}/{object}/config", self.prefix, self.node)
    }

    /// Everything the link subscribes to: the command topics and Home Assistant's status.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut v: Vec<String> = CommandTopic::ALL
            .into_iter()
            .map(|c| self.command(c))
            .collect();
        v.push(self.ha_status());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_built_and_recognised() {
        let t = Topics::new("hearth/dev-1", "homeassistant", "dev-1");
        assert_eq!(t.availability(), "hearth/dev-1/availability");
        assert_eq!(
            t.command(CommandTopic::Target),
            "hearth/dev-1/climate/target/set"
        );
        assert_eq!(
            t.config("climate", "thermostat"),
            "homeassistant/climate/dev-1/thermostat/config"
        );
        for c in CommandTopic::ALL {
            assert_eq!(t.command_of(&t.command(c)), Some(c));
        }
        assert_eq!(t.command_of("hearth/dev-1/climate/target"), None);
        assert_eq!(t.subscriptions().len(), 6);
        assert_eq!(Topics::new("b", "p", "a.b/c+").node, "a_b_c_");
    }
}
