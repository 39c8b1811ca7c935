//! Fuzz target: the whole analysis entry point the proxy calls (prefilter → parser → facts →
//! rules → policy) on any UTF-8 text must return a decision, never panic or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::policy::Policy;
use pgwarden::sql::AnalysisContext;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = Policy::default();
    for allow_rewrite in [false, true] {
        drop(policy.check_text(text, &AnalysisContext::default(), allow_rewrite));
    }
});
