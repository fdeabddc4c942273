//! Small helpers every layer may use: locks shared with the browser's between-frames pump, the
//! wall clock for timestamps people read, and finished background tasks. Imports nothing of the
//! crate.

/// Locks state shared by the frame loop and the browser's between-frames pump. A poisoned lock
/// is taken over: every holder leaves the state consistent between statements.
pub fn lock_shared<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Milliseconds since the Unix epoch (chat timestamps).
pub fn now_ms() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The day `ms` (since the Unix epoch) falls on, in words people read: `3 March 2026` (UTC).
pub fn date_words(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    // Howard Hinnant's days-to-civil.
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{day} {} {year}", MONTHS[(month - 1) as usize])
}

/// Removes the finished tasks from `tasks` and returns their results, without blocking: used
/// for work that must not stall a frame (hashing a file, a native file dialog).
pub fn take_finished<T>(tasks: &mut Vec<bevy::tasks::Task<T>>) -> Vec<T> {
    take_finished_with(tasks, |task| task)
        .into_iter()
        .map(|(_, result)| result)
        .collect()
}

/// [`take_finished`] for items that carry a task among other fields (`task` picks it out): the
/// finished items are removed and returned with their results.
pub fn take_finished_with<E, T>(
    items: &mut Vec<E>,
    mut task: impl FnMut(&mut E) -> &mut bevy::tasks::Task<T>,
) -> Vec<(E, T)> {
    let mut done = Vec::new();
    let mut i = 0;
    while i < items.len() {
        match bevy::tasks::block_on(bevy::tasks::poll_once(task(&mut items[i]))) {
            Some(result) => done.push((items.remove(i), result)),
            None => i += 1,
        }
    }
    done
}

/// An HTTP answer with `status` and `body`, as the HTTP client would hand it over (for tests
/// of code that reads answers, without a server).
#[cfg(test)]
pub(crate) fn http_answer(status: u16, body: &str) -> ehttp::Result<ehttp::Response> {
    Ok(ehttp::Response {
        url: "http://h/api/rooms".into(),
        ok: (200..300).contains(&status),
        status,
        status_text: String::new(),
        headers: Default::default(),
        bytes: body.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_read_as_days() {
        assert_eq!(super::date_words(0), "1 January 1970");
        assert_eq!(super::date_words(951_782_400_000), "29 February 2000");
        assert_eq!(super::date_words(1_772_496_000_000), "3 March 2026");
    }
}
