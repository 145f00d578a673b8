//! Fuzz target: a task body `[args, kwargs, embed]` and what the worker does
//! with it: decode it (`TaskMessage::decode`), bind the arguments the way
//! Python would (`task::bind_arguments`, defaults, `*args` and `**kwargs`
//! included), and run the app's tasks on them —
//! the blog's SMS task (with the console gateway: nothing leaves the
//! machine), `add`, `mul`, `xsum` and `noop`.
//!
//! Properties: nothing panics; a body that decodes is written again
//! (`body_json`, as a retry is) and decodes to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../logic/task_body.rs");
