//! Crash safety of the embedded default (issue 16), each suite against the real binary, a real
//! Anvil, real SQLite files and a real Mosquitto, with an acknowledgement ledger checked after
//! every restart:
//!
//! - `kill`: SIGKILL of the whole process group at random moments under load;
//! - `power`: power cuts of an ext4 file system on a loop device, with a negative control that
//!   must see losses when fsync is turned off;
//! - `syscall`: EIO from, or SIGKILL in, each file-system call of an append batch.
//!
//! CI runs a short form of each; `scripts/crash-suite.sh` runs them in full. They need root, loop
//! devices, strace, eatmydata and python3 (`scripts/setup.sh` installs the packages).

mod harness;
mod kill;
mod power;
mod syscall;
