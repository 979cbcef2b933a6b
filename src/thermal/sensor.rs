//! Temperature sources: the simulated room, a file (sysfs, 1-wire) and, later, readings pushed over
//! the API. Every reading carries the time it was taken so that safety can judge its age.

use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;
use tokio::sync::watch;

/// One temperature reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reading {
    /// The temperature, °C.
    pub celsius: f64,
    /// When it was taken, seconds since the clock's epoch.
    pub at_s: f64,
}

/// Why a sensor gave no reading.
#[derive(Debug, Error)]
pub enum SensorError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The sensor file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file's content is not a reading in the configured unit.
    #[error("{path}: {msg}")]
    Parse {
        /// The sensor file.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// The source has no value yet.
    #[error("no reading available yet")]
    NoData,
}

/// A source of temperature readings: the same trait serves simulation and hardware.
pub trait TemperatureSource: Send {
    /// A short name for logs and status.
    fn name(&self) -> String;
    /// Takes a reading now (`now_s` on the daemon clock). May block briefly (file I/O).
    fn read(&mut self, now_s: f64) -> Result<Reading, SensorError>;
}

/// Sensor imperfection: Gaussian noise then quantisation.
#[derive(Debug, Clone)]
pub struct SensorNoise {
    normal: Option<Normal<f64>>,
    quantum: f64,
    rng: StdRng,
}

impl SensorNoise {
    /// Noise of standard deviation `sigma` and rounding to `quantum` (0 = none), seeded.
    pub fn new(sigma: f64, quantum: f64, seed: u64) -> Self {
        Self {
            normal: (sigma > 0.0)
                .then(|| Normal::new(0.0, sigma))
                .and_then(Result::ok),
            quantum,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// What a sensor shows for a true temperature.
    pub fn apply(&mut self, truth: f64) -> f64 {
        let noisy = truth + self.normal.map_or(0.0, |n| n.sample(&mut self.rng));
        if self.quantum > 0.0 {
            (noisy / self.quantum).round() * self.quantum
        } else {
            noisy
        }
    }
}

/// The true state of a simulated room, published by the room task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoomTruth {
    /// True air temperature, °C.
    pub room_celsius: f64,
    /// Outdoor temperature, °C.
    pub outdoor_celsius: f64,
    /// When, seconds since the epoch.
    pub at_s: f64,
}

/// Which temperature of the simulated room a sensor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedPoint {
    /// The room air.
    Room,
    /// Outdoors.
    Outdoor,
}

/// Reads the simulated room (or its outdoor temperature) through a noisy, quantised sensor.
pub struct SimulatedSource {
    truth: watch::Receiver<RoomTruth>,
    point: SimulatedPoint,
    noise: SensorNoise,
}

impl SimulatedSource {
    /// A sensor on `point` of the room whose truth `truth` publishes.
    pub fn new(
        truth: watch::Receiver<RoomTruth>,
        point: SimulatedPoint,
        noise: SensorNoise,
    ) -> Self {
        Self {
            truth,
            point,
            noise,
        }
    }
}

impl TemperatureSource for SimulatedSource {
    fn name(&self) -> String {
        format!("simulated {:?}", self.point).to_lowercase()
    }

    fn read(&mut self, _now_s: f64) -> Result<Reading, SensorError> {
        let t = *self.truth.borrow();
        let celsius = match self.point {
            SimulatedPoint::Room => t.room_celsius,
            SimulatedPoint::Outdoor => t.outdoor_celsius,
        };
        Ok(Reading {
            celsius: self.noise.apply(celsius),
            at_s: t.at_s,
        })
    }
}

/// A constant temperature (an outdoor value when there is no outdoor sensor).
pub struct FixedSource(pub f64);

impl TemperatureSource for FixedSource {
    fn name(&self) -> String {
        format!("fixed {} °C", self.0)
    }

    fn read(&mut self, now_s: f64) -> Result<Reading, SensorError> {
        Ok(Reading {
            celsius: self.0,
            at_s: now_s,
        })
    }
}

/// How a sensor file encodes the temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileUnit {
    /// A plain number in °C, e.g. `21.4`.
    Celsius,
    /// An integer in m°C, as in `/sys/class/thermal/*/temp`, e.g. `21400`.
    Millicelsius,
    /// The kernel's 1-wire `w1_slave` format: `... : crc=xx YES` then `... t=21437`.
    W1Slave,
}

/// Parses a sensor file's content in the given unit into °C.
pub fn parse_sensor_text(text: &str, unit: FileUnit) -> Result<f64, String> {
    let value = match unit {
        FileUnit::Celsius => text
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("expected a number in °C, got {:?}", text.trim()))?,
        FileUnit::Millicelsius => {
            text.trim()
                .parse::<i64>()
                .map_err(|_| format!("expected an integer in m°C, got {:?}", text.trim()))?
                as f64
                / 1000.0
        }
        FileUnit::W1Slave => {
            let mut lines = text.lines();
            let crc = lines.next().unwrap_or("");
            if !crc.trim_end().ends_with("YES") {
                return Err(format!("1-wire CRC check failed: {:?}", crc.trim()));
            }
            let data = lines.next().unwrap_or("");
            let (_, t) = data
                .rsplit_once("t=")
                .ok_or_else(|| format!("1-wire data line has no t=: {:?}", data.trim()))?;
            t.trim()
                .parse::<i64>()
                .map_err(|_| format!("1-wire t= is not an integer: {:?}", t.trim()))?
                as f64
                / 1000.0
        }
    };
    if !value.is_finite() || !(-60.0..=150.0).contains(&value) {
        return Err(format!("{value} °C is not a plausible room temperature"));
    }
    Ok(value)
}

/// Reads a number from a file each time it is polled.
pub struct FileSource {
    path: PathBuf,
    unit: FileUnit,
}

impl FileSource {
    /// A sensor backed by `path`, encoded as `unit`.
    pub fn new(path: PathBuf, unit: FileUnit) -> Self {
        Self { path, unit }
    }
}

impl TemperatureSource for FileSource {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn read(&mut self, now_s: f64) -> Result<Reading, SensorError> {
        let path = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path).map_err(|source| SensorError::Io {
            path: path.clone(),
            source,
        })?;
        let celsius =
            parse_sensor_text(&text, self.unit).map_err(|msg| SensorError::Parse { path, msg })?;
        Ok(Reading {
            celsius,
            at_s: now_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(
            parse_sensor_text("21.5\n", FileUnit::Celsius).unwrap(),
            21.5
        );
        assert_eq!(
            parse_sensor_text("21437\n", FileUnit::Millicelsius).unwrap(),
            21.437
        );
        let w1 = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n";
        assert_eq!(parse_sensor_text(w1, FileUnit::W1Slave).unwrap(), 23.125);
    }

    #[test]
    fn rejects_bad_content() {
        let bad_crc = "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 t=23125\n";
        assert!(parse_sensor_text(bad_crc, FileUnit::W1Slave).is_err());
        assert!(parse_sensor_text("", FileUnit::Celsius).is_err());
        assert!(parse_sensor_text("21.5", FileUnit::Millicelsius).is_err());
        assert!(parse_sensor_text("85000000", FileUnit::Millicelsius).is_err());
        assert!(parse_sensor_text("NaN", FileUnit::Celsius).is_err());
    }

    #[test]
    fn file_source_stamps_reading_and_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("temp");
        std::fs::write(&p, "20500").unwrap();
        let mut s = FileSource::new(p.clone(), FileUnit::Millicelsius);
        let r = s.read(42.0).unwrap();
        assert_eq!((r.celsius, r.at_s), (20.5, 42.0));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(s.read(43.0), Err(SensorError::Io { .. })));
    }

    #[test]
    fn noise_is_quantised() {
        let mut n = SensorNoise::new(0.05, 0.1, 1);
        for _ in 0..100 {
            let v = n.apply(21.0);
            assert!(((v * 10.0).round() - v * 10.0).abs() < 1e-9);
            assert!((v - 21.0).abs() < 0.35);
        }
    }
}
