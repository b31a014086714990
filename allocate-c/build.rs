//! Gives the shared library a SONAME on Linux, so that programs linked against it keep
//! loading compatible releases and refuse incompatible ones. Below 1.0 a minor release may
//! change the ABI, so the SONAME names major and minor (`liballocate.so.0.1`); from 1.0 on,
//! the major alone.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let abi = if major == "0" {
        format!("0.{}", env!("CARGO_PKG_VERSION_MINOR"))
    } else {
        major.to_owned()
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liballocate.so.{abi}");
}
