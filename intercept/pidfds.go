package intercept

import (
	"sync"

	"golang.org/x/sys/unix"
)

// maxPidfds bounds the pidfds kept: one per thread that made a socket
// call lately. Threads come and go (a server that forks per connection
// makes a new one each time), so the cache is emptied when it fills.
const maxPidfds = 64

// pidfdCache keeps the pidfd of each calling thread, by TID, so that a
// thread's next call costs one pidfd_getfd instead of pidfd_open,
// pidfd_getfd and close. An entry in use by a call is not closed under
// it: calls on other goroutines may evict it meanwhile, and the last user
// closes it.
type pidfdCache struct {
	mu sync.Mutex
	m  map[int]*cachedPidfd
}

type cachedPidfd struct {
	fd      int
	users   int
	evicted bool
}

// get returns tid's pidfd if one is kept, and release, to be called once
// the caller is done with it (dead true if the thread turned out to be
// gone, which evicts it).
func (pc *pidfdCache) get(tid int) (fd int, release func(dead bool), ok bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	e := pc.m[tid]
	if e == nil {
		return -1, nil, false
	}
	e.users++
	return e.fd, func(dead bool) {
		pc.mu.Lock()
		defer pc.mu.Unlock()
		e.users--
		if dead && !e.evicted {
			pc.evictLocked(tid, e)
		}
		if e.evicted && e.users == 0 {
			unix.Close(e.fd)
		}
	}, true
}

// put keeps fd as tid's pidfd, taking it over.
func (pc *pidfdCache) put(tid, fd int) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if old := pc.m[tid]; old != nil {
		pc.evictLocked(tid, old)
		if old.users == 0 {
			unix.Close(old.fd)
		}
	}
	if len(pc.m) >= maxPidfds {
		pc.emptyLocked()
	}
	if pc.m == nil {
		pc.m = map[int]*cachedPidfd{}
	}
	pc.m[tid] = &cachedPidfd{fd: fd}
}

func (pc *pidfdCache) evictLocked(tid int, e *cachedPidfd) {
	e.evicted = true
	delete(pc.m, tid)
}

func (pc *pidfdCache) emptyLocked() {
	for tid, e := range pc.m {
		pc.evictLocked(tid, e)
		if e.users == 0 {
			unix.Close(e.fd)
		}
	}
}

// closeAll closes every kept pidfd; calls may no longer be using them.
func (pc *pidfdCache) closeAll() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.emptyLocked()
}
