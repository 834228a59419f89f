//! Locks that recover from poisoning.
//!
//! A panic while a `std::sync` lock is held poisons it. Every critical section in this crate
//! leaves its data consistent (it swaps, inserts or removes whole values), so a poisoned lock is
//! taken as it is rather than turning one panic into a panic at every later caller.

use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// Lock `m`, recovering the guard if a holder panicked.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-lock `l`, recovering the guard if a holder panicked.
pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-lock `l`, recovering the guard if a holder panicked.
pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Wait on `c` with `guard`, recovering the guard if a holder panicked meanwhile.
pub(crate) fn wait<'a, T>(c: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn poison<T: Send + Sync + 'static>(shared: Arc<T>, hold: fn(&T)) {
        let t = std::thread::spawn(move || hold(&shared));
        assert!(t.join().is_err(), "the holder panics");
    }

    #[test]
    fn sync_lock_recovers_a_poisoned_mutex() {
        let m = Arc::new(Mutex::new(1));
        poison(m.clone(), |m| {
            let mut g = m.lock().unwrap_or_else(PoisonError::into_inner);
            *g = 2;
            panic!("poison");
        });
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 2);
        *lock(&m) = 3;
        assert_eq!(*lock(&m), 3);
    }

    #[test]
    fn sync_read_and_write_recover_a_poisoned_rwlock() {
        let l = Arc::new(RwLock::new(vec![1]));
        poison(l.clone(), |l| {
            let _g = l.write().unwrap_or_else(PoisonError::into_inner);
            panic!("poison");
        });
        assert!(l.is_poisoned());
        write(&l).push(2);
        assert_eq!(*read(&l), [1, 2]);
    }

    #[test]
    fn sync_wait_recovers_a_mutex_poisoned_while_waiting() {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let mut g = lock(&pair.0);
        let other = pair.clone();
        let t = std::thread::spawn(move || {
            let mut g = lock(&other.0);
            *g = true;
            other.1.notify_all();
            panic!("poison while holding");
        });
        while !*g {
            g = wait(&pair.1, g);
        }
        drop(g);
        assert!(t.join().is_err());
        assert!(pair.0.is_poisoned());
        assert!(*lock(&pair.0));
    }
}
