//! Reading ahead: the next batch of work read (in parallel) while the last one is consumed (in
//! order), so a parallel read and the serial work that takes its results overlap rather than
//! each leaving a core idle in turn.

/// `take` of `read` of each item, in order, the next item read while the last is taken (the
/// two side by side on rayon's pool). At most two items' reads are held at once. Stops at the
/// first error `take` returns (the item read ahead of it is dropped).
pub fn read_ahead<T: Sync, R: Send, E: Send>(
    items: &[T],
    read: impl Fn(&T) -> R + Sync,
    mut take: impl FnMut(&T, R) -> Result<(), E> + Send,
) -> Result<(), E> {
    let mut ready = items.first().map(&read);
    let mut k = 0;
    while let Some(r) = ready.take() {
        let (taken, next) = rayon::join(|| take(&items[k], r), || items.get(k + 1).map(&read));
        taken?;
        ready = next;
        k += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_taken_once_in_order_and_the_first_error_stops_it() {
        let items: Vec<u32> = (0..9).collect();
        let mut seen = Vec::new();
        let done: Result<(), String> = read_ahead(
            &items,
            |&i| i * 10,
            |&i, r| {
                seen.push((i, r));
                Ok(())
            },
        );
        assert_eq!(done, Ok(()));
        assert_eq!(seen, items.iter().map(|&i| (i, i * 10)).collect::<Vec<_>>());

        let mut taken = Vec::new();
        let stopped = read_ahead(
            &items,
            |&i| i,
            |&i, _| {
                taken.push(i);
                if i == 3 { Err(format!("item {i}")) } else { Ok(()) }
            },
        );
        assert_eq!(stopped, Err("item 3".to_string()));
        assert_eq!(taken, vec![0, 1, 2, 3]);
        let none: Vec<u32> = Vec::new();
        assert_eq!(read_ahead(&none, |&i| i, |_, _| Err::<(), _>("never taken")), Ok(()));
    }
}
