//! Which device jobs the engine may prepare ahead, as SQL shared by both backends (both read
//! them the same way). Each fragment takes a job as `j` and its code (left-joined) as `a`.

/// A job's due time if it opens its code's window, else NULL.
macro_rules! opening_at {
    () => {
        "CASE WHEN j.action IS NULL AND j.run_after = a.starts_at THEN j.run_after END"
    };
}

/// A job's due time if it is neither a window's opening nor a read-back (a retry, a door
/// command, a removal), else NULL.
macro_rules! other_work_at {
    () => {
        "CASE WHEN j.action IS NULL AND (j.access_code_id IS NULL OR j.run_after = a.starts_at)
            THEN NULL ELSE j.run_after END"
    };
}

pub(crate) use {opening_at, other_work_at};
