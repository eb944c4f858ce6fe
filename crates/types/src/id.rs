use uuid::Uuid;

/// A new time-ordered identifier (UUID v7): sortable by creation time, unique without coordination.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let first = new_id();
        let second = new_id();
        assert_ne!(first, second);
        assert!(first < second, "v7 ids sort by creation time");
    }
}
