//! The one integration test binary (STYLE §4.1): every suite is a module here.

mod smoke;
mod support;
