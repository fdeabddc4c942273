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
