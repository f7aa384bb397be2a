package intercept

import (
	"sync"

	"golang.org/x/sys/unix"
)

// maxThreadFDs bounds the descriptors a cache keeps: one per thread that
// made a socket call lately. Threads come and go (a server that forks per connection
// makes a new one each time), so the cache is emptied when it fills.
const maxThreadFDs = 64

// threadFDCache keeps a descriptor naming each calling thread, by TID
// (its pidfd; its /proc/TID/fd directory), so that the thread's next call
// does not open and close it again. Both name the thread itself, never a
// later one given the same TID. An entry in use by a call is not closed under
// it: calls on other goroutines may evict it meanwhile, and the last user
// closes it.
type threadFDCache struct {
	mu sync.Mutex
	m  map[int]*cachedThreadFD
}

type cachedThreadFD struct {
	fd      int
	users   int
	evicted bool
}

// get returns tid's descriptor if one is kept, and release, to be called once
// the caller is done with it (dead true if the thread turned out to be
// gone, which evicts it).
func (pc *threadFDCache) get(tid int) (fd int, release func(dead bool), ok bool) {
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

// put keeps fd as tid's descriptor, taking it over.
func (pc *threadFDCache) put(tid, fd int) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if old := pc.m[tid]; old != nil {
		pc.evictLocked(tid, old)
		if old.users == 0 {
			unix.Close(old.fd)
		}
	}
	if len(pc.m) >= maxThreadFDs {
		pc.emptyLocked()
	}
	if pc.m == nil {
		pc.m = map[int]*cachedThreadFD{}
	}
	pc.m[tid] = &cachedThreadFD{fd: fd}
}

func (pc *threadFDCache) evictLocked(tid int, e *cachedThreadFD) {
	e.evicted = true
	delete(pc.m, tid)
}

func (pc *threadFDCache) emptyLocked() {
	for tid, e := range pc.m {
		pc.evictLocked(tid, e)
		if e.users == 0 {
			unix.Close(e.fd)
		}
	}
}

// closeAll closes every kept descriptor; calls may no longer be using them.
func (pc *threadFDCache) closeAll() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.emptyLocked()
}
