//! The floor of one component call (`make bench`): what the test-only builds answer at [`PATH`]. The p2
//! fixture build and the p3 floor build (`component/floor-p3`) give the same answer, so their numbers compare
//! one protocol with the other and nothing else.

/// The route both floor builds answer.
pub const PATH: &str = "/_fixture/floor";
/// The body of the answer.
pub const BODY: &str = "ok\n";
/// The answer's content type.
pub const CONTENT_TYPE: &str = "text/plain";
