//! Everything that talks to the outside for the engine's stages: the HTTP client of
//! OpenAI-compatible servers ([`http`]) and many requests at once ([`concurrent`]), child processes in process groups of their own that
//! die with selm-tui ([`process`]), the model servers a run drives ([`server`]), and the
//! external trainer's file contract ([`trainer`]), and waits on them that a command can cut
//! short ([`wait`]). The
//! stages only ask for completions; which engine answered is not theirs to know.

pub mod concurrent;
pub mod http;
pub mod process;
pub mod server;
pub mod trainer;
pub mod wait;
