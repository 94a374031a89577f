//! Which GPUs a process has open: the devices recognised by their device
//! numbers, and the compact list the node summary and `/ps` carry.
//!
//! A process holds a GPU when it has a descriptor open on one of its
//! device files. The file is recognised by its device number (`st_rdev`),
//! never by its path (a container or a test may name it anything):
//!
//! | device | numbers | shown as |
//! |---|---|---|
//! | NVIDIA GPU N (`/dev/nvidiaN`) | char 195, minor N below 254 | `nvidiaN` |
//! | `nvidiactl` (255), `nvidia-modeset` (254) | char 195 | not a GPU |
//! | DRM render node (`/dev/dri/renderD<128+N>`) | char 226, minor 128..=191 | `renderN` |
//! | AMD's compute interface (`/dev/kfd`) | char, the major `/proc/devices` names `kfd` | `amd?` |
//!
//! `/dev/kfd` is one file shared by every AMD GPU of the node, so it says
//! "an AMD GPU, index unknown"; a ROCm process also opens the render node
//! of each GPU it uses, which gives the index. `renderN` is the DRM minor's
//! index, which is the GPU's in the kernel's probe order (a display-only
//! BMC chip has no render node). DRM primary nodes (`/dev/dri/cardN`) are
//! display (mode setting), not counted.
//!
//! # The list (`gpu` field, `GPU` column)
//!
//! Items joined by `,`, devices first in order (`nvidia0,nvidia3`,
//! `render1`, `amd?,render0`), then flags: `+` says the scan stopped at
//! the agent's cap of descriptors per process, so devices past it are not
//! listed (`nvidia0,+`; `+` alone: none among those scanned); `!` (the
//! summary only, never shown) says the process's owner could not read its
//! descriptors themselves, so only administrators are shown the list. In
//! the summary the empty list is `\-`; `?` says unknown for that process.
//! An item this build does not know (a newer agent's) is kept as written
//! if it is a short lowercase name, and shown.

use std::fmt;

/// NVIDIA's character major: minor N is `/dev/nvidiaN`.
pub const NVIDIA_MAJOR: u32 = 195;
/// `nvidia-modeset`'s minor (not a GPU).
pub const NVIDIA_MODESET_MINOR: u32 = 254;
/// `nvidiactl`'s minor (not a GPU).
pub const NVIDIA_CTL_MINOR: u32 = 255;
/// DRM's character major.
pub const DRM_MAJOR: u32 = 226;
/// The first DRM render minor (`renderD128`).
pub const RENDER_MINOR_FIRST: u32 = 128;
/// The last DRM render minor of the classic range (`renderD191`).
pub const RENDER_MINOR_LAST: u32 = 191;

/// The summary's token for "unknown for this process".
pub const UNKNOWN: &str = "?";

/// Longest unknown item kept.
const OTHER_MAX: usize = 24;

/// One GPU device a process has open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Gpu {
    /// `/dev/nvidiaN`.
    Nvidia(u32),
    /// DRM render node `renderD<128+N>`.
    Render(u32),
    /// `/dev/kfd`: an AMD GPU, index unknown.
    Amd,
    /// An item of a newer writer, as written.
    Other(String),
}

impl Gpu {
    /// The GPU a character device number names, if any; `kfd_major` is
    /// the major `/proc/devices` gives `kfd` on the node (dynamic).
    pub fn of_char_device(major: u32, minor: u32, kfd_major: Option<u32>) -> Option<Gpu> {
        match major {
            NVIDIA_MAJOR if minor < NVIDIA_MODESET_MINOR => Some(Gpu::Nvidia(minor)),
            DRM_MAJOR if (RENDER_MINOR_FIRST..=RENDER_MINOR_LAST).contains(&minor) => {
                Some(Gpu::Render(minor - RENDER_MINOR_FIRST))
            }
            m if Some(m) == kfd_major => Some(Gpu::Amd),
            _ => None,
        }
    }

    fn parse(item: &str) -> Option<Gpu> {
        let index = |prefix: &str| -> Option<u32> {
            let n = item.strip_prefix(prefix)?;
            // Canonical decimal only, so a name has one spelling.
            (n == "0" || (!n.starts_with('0') && !n.is_empty()))
                .then(|| n.parse().ok())
                .flatten()
        };
        if let Some(n) = index("nvidia") {
            return Some(Gpu::Nvidia(n));
        }
        if let Some(n) = index("render") {
            return Some(Gpu::Render(n));
        }
        if item == "amd?" {
            return Some(Gpu::Amd);
        }
        let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "?_.-".contains(c);
        let ours = ["nvidia", "render", "amd"]
            .iter()
            .any(|p| item.starts_with(p));
        (!ours
            && item.len() <= OTHER_MAX
            && item.starts_with(|c: char| c.is_ascii_lowercase())
            && item.chars().all(plain))
        .then(|| Gpu::Other(item.to_string()))
    }
}

impl Gpu {
    /// Appends the name [`fmt::Display`] shows, without the formatting
    /// machinery (a table writes one per GPU a process holds).
    fn write_into(&self, out: &mut String) {
        let (prefix, n) = match self {
            Gpu::Nvidia(n) => ("nvidia", *n),
            Gpu::Render(n) => ("render", *n),
            Gpu::Amd => return out.push_str("amd?"),
            Gpu::Other(s) => return out.push_str(s),
        };
        out.push_str(prefix);
        out.push_str(itoa::Buffer::new().format(n));
    }
}

impl fmt::Display for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_into(&mut s);
        f.write_str(&s)
    }
}

/// The GPUs one process has open, as far as the scan went.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Gpus {
    /// The devices, in order, each once.
    pub devices: Vec<Gpu>,
    /// The scan stopped at the cap: devices past it are not listed.
    pub truncated: bool,
    /// The process's owner could not read its descriptors (its uids or
    /// gids differ, or it is not dumpable): administrators only.
    pub restricted: bool,
}

impl Gpus {
    /// A list of `devices` (sorted, duplicates dropped).
    pub fn new(devices: impl IntoIterator<Item = Gpu>, truncated: bool) -> Self {
        let mut devices: Vec<Gpu> = devices.into_iter().collect();
        devices.sort();
        devices.dedup();
        Gpus {
            devices,
            truncated,
            restricted: false,
        }
    }

    /// No device, nothing left out, no flag: the summary's `\-`.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && !self.truncated && !self.restricted
    }

    /// The summary's field: items and flags joined by `,`; empty when
    /// [`Gpus::is_empty`].
    pub fn token(&self) -> String {
        let mut out = String::new();
        self.write_items(&mut out, true);
        out
    }

    /// The items of [`Self::token`], with or without the `!` flag.
    fn write_items(&self, out: &mut String, restricted: bool) {
        let mut sep = "";
        for d in &self.devices {
            out.push_str(sep);
            d.write_into(out);
            sep = ",";
        }
        if self.truncated {
            out.push_str(sep);
            out.push('+');
            sep = ",";
        }
        if restricted && self.restricted {
            out.push_str(sep);
            out.push('!');
        }
    }

    /// Reads [`Gpus::token`] (the empty string is the empty list); `None`
    /// when an item is neither a device, a flag nor a plain name.
    pub fn parse_token(s: &str) -> Option<Gpus> {
        let mut g = Gpus::default();
        if s.is_empty() {
            return Some(g);
        }
        for item in s.split(',') {
            match item {
                "+" => g.truncated = true,
                "!" => g.restricted = true,
                _ => g.devices.push(Gpu::parse(item)?),
            }
        }
        g.devices.sort();
        g.devices.dedup();
        Some(g)
    }

    /// The `GPU` column: the devices and `+`, without the `!` flag;
    /// `None` (shown `-`) for no device and nothing left out.
    pub fn display(&self) -> Option<String> {
        if self.devices.is_empty() && !self.truncated {
            return None;
        }
        let mut out = String::new();
        self.write_items(&mut out, false);
        Some(out)
    }
}

/// The character devices section of `/proc/devices`: (major, name).
fn char_devices(proc_devices: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let text = proc_devices;
    let mut in_char = false;
    text.split(|&b| b == b'\n').filter_map(move |line| {
        let line = line.trim_ascii();
        if line.ends_with(b":") {
            in_char = line == b"Character devices:";
            return None;
        }
        if !in_char {
            return None;
        }
        let mut toks = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty());
        let major = std::str::from_utf8(toks.next()?).ok()?.parse().ok()?;
        Some((major, toks.next()?))
    })
}

/// `kfd`'s major in `/proc/devices` (AMD's driver registers it
/// dynamically), if the driver is loaded.
pub fn kfd_major(proc_devices: &[u8]) -> Option<u32> {
    char_devices(proc_devices).find_map(|(m, name)| (name == b"kfd").then_some(m))
}

/// Whether `/proc/devices` shows a GPU driver: NVIDIA's major or `kfd`.
/// (DRM's major is there with any display driver, a BMC's included:
/// render nodes are looked for in sysfs instead.)
pub fn gpu_driver_loaded(proc_devices: &[u8]) -> bool {
    char_devices(proc_devices).any(|(m, name)| m == NVIDIA_MAJOR || name == b"kfd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_by_number() {
        let kfd = Some(509);
        assert_eq!(Gpu::of_char_device(195, 3, kfd), Some(Gpu::Nvidia(3)));
        assert_eq!(Gpu::of_char_device(195, 0, None), Some(Gpu::Nvidia(0)));
        assert_eq!(Gpu::of_char_device(195, 255, kfd), None, "nvidiactl");
        assert_eq!(Gpu::of_char_device(195, 254, kfd), None, "nvidia-modeset");
        assert_eq!(Gpu::of_char_device(226, 129, kfd), Some(Gpu::Render(1)));
        assert_eq!(Gpu::of_char_device(226, 0, kfd), None, "card0");
        assert_eq!(Gpu::of_char_device(226, 192, kfd), None);
        assert_eq!(Gpu::of_char_device(509, 0, kfd), Some(Gpu::Amd));
        assert_eq!(Gpu::of_char_device(509, 0, None), None);
        assert_eq!(Gpu::of_char_device(1, 3, kfd), None, "/dev/null");
    }

    #[test]
    fn tokens_round_trip_and_display() {
        let g = Gpus::new(
            [Gpu::Nvidia(10), Gpu::Amd, Gpu::Nvidia(2), Gpu::Nvidia(2)],
            true,
        );
        assert_eq!(g.token(), "nvidia2,nvidia10,amd?,+");
        assert_eq!(Gpus::parse_token(&g.token()), Some(g.clone()));
        assert_eq!(g.display().as_deref(), Some("nvidia2,nvidia10,amd?,+"));
        let r = Gpus {
            restricted: true,
            ..Gpus::new([Gpu::Render(1)], false)
        };
        assert_eq!(r.token(), "render1,!");
        assert_eq!(Gpus::parse_token("render1,!"), Some(r.clone()));
        assert_eq!(r.display().as_deref(), Some("render1"));
        let hidden_none = Gpus {
            restricted: true,
            ..Gpus::default()
        };
        assert_eq!(hidden_none.display(), None);
        assert_eq!(Gpus::parse_token(""), Some(Gpus::default()));
        assert_eq!(Gpus::default().display(), None);
        assert_eq!(
            Gpus::parse_token("+").unwrap().display().as_deref(),
            Some("+")
        );
        // A newer agent's device is kept; junk is refused.
        assert_eq!(
            Gpus::parse_token("intel0,nvidia1").unwrap().devices,
            vec![Gpu::Nvidia(1), Gpu::Other("intel0".into())]
        );
        for bad in ["nvidia01", "Nvidia1", "a b", "x\u{1b}", ",", "nvidia1,,"] {
            assert_eq!(Gpus::parse_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn proc_devices() {
        let text = b"Character devices:\n  1 mem\n195 nvidia-frontend\n226 drm\n509 kfd\n\n\
                     Block devices:\n  8 sd\n195 fake\n";
        assert_eq!(kfd_major(text), Some(509));
        assert!(gpu_driver_loaded(text));
        let plain =
            b"Character devices:\n  1 mem\n226 drm\n\nBlock devices:\n195 nvidia\n259 kfd\n";
        assert_eq!(kfd_major(plain), None);
        assert!(!gpu_driver_loaded(plain), "a block major is not NVIDIA's");
        assert!(gpu_driver_loaded(b"Character devices:\n195 nvidia\n"));
    }
}
