//! The engine's options as front ends give them: each parses from the
//! word a user types (`FromStr`) and prints back as that word (`Display`),
//! so a command line, a Python call or a request names them the same way and
//! no front end keeps a copy of these types.

use wsiseg_infer::{Device, DeviceChoice};

use crate::engine::setting;
use crate::{BadTiles, Decode, EngineError, MaskValues, Setting};

/// A list of devices such as `auto`, `cpu`, `cuda:0,cuda:1`, `cuda:all` or
/// `cpu,cpu`, one inference worker each; parsed as given (the syntax), and
/// resolved on this machine by [`DeviceList::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(Vec<DeviceItem>);

/// One entry of a [`DeviceList`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceItem {
    One(DeviceChoice),
    /// Every GPU libtorch sees.
    AllCuda,
}

impl Default for DeviceList {
    fn default() -> Self {
        Self(vec![DeviceItem::One(DeviceChoice::Auto)])
    }
}

impl std::str::FromStr for DeviceList {
    type Err = EngineError;
    fn from_str(spec: &str) -> Result<Self, EngineError> {
        let items = spec
            .split(',')
            .map(str::trim)
            .map(|item| {
                if item.eq_ignore_ascii_case("cuda:all") || item.eq_ignore_ascii_case("all") {
                    Ok(DeviceItem::AllCuda)
                } else {
                    Ok(DeviceItem::One(item.parse::<DeviceChoice>()?))
                }
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        if items.is_empty() {
            return Err(setting(Setting::Devices, spec, "names no device"));
        }
        Ok(Self(items))
    }
}

impl std::fmt::Display for DeviceList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match item {
                DeviceItem::One(choice) => write!(f, "{choice}")?,
                DeviceItem::AllCuda => f.write_str("cuda:all")?,
            }
        }
        Ok(())
    }
}

impl DeviceList {
    /// The devices on this machine, one inference worker each. `cuda:all`
    /// is every GPU libtorch sees (an error when there is none); CUDA asked
    /// for where there is none is an error, never the CPU instead.
    pub fn resolve(&self) -> Result<Vec<Device>, EngineError> {
        let mut devices = Vec::new();
        for item in &self.0 {
            match item {
                DeviceItem::AllCuda => {
                    let n = wsiseg_infer::cuda_device_count();
                    if n == 0 {
                        // The same error as naming a GPU that is not there.
                        DeviceChoice::Cuda(0).resolve()?;
                    }
                    devices.extend((0..n).map(Device::Cuda));
                }
                DeviceItem::One(choice) => devices.push(choice.resolve()?),
            }
        }
        Ok(devices)
    }
}

impl MaskValues {
    /// Both ways, as requests and reports name them.
    pub const ALL: [MaskValues; 2] = [MaskValues::ClassIndex, MaskValues::Binary255];

    /// Its name: `01` or `0255`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClassIndex => "01",
            Self::Binary255 => "0255",
        }
    }
}

impl std::fmt::Display for MaskValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MaskValues {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s.trim())
            .ok_or_else(|| {
                setting(
                    Setting::MaskValues,
                    s,
                    "is not a mask encoding: use 01 or 0255",
                )
            })
    }
}

impl BadTiles {
    /// Both, as requests and reports name them.
    pub const ALL: [BadTiles; 2] = [BadTiles::Fail, BadTiles::Background];

    /// As requests, reports and run records name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Background => "background",
        }
    }
}

impl std::fmt::Display for BadTiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BadTiles {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        Self::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                setting(
                    Setting::BadTiles,
                    s,
                    "is not a choice: use fail or background",
                )
            })
    }
}

impl Decode {
    /// All three, as requests and reports name them.
    pub const ALL: [Decode; 3] = [Decode::Auto, Decode::Cpu, Decode::Gpu];

    /// As requests and reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Decode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Decode {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        Self::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| setting(Setting::Decode, s, "is not a choice: use cpu, gpu or auto"))
    }
}
