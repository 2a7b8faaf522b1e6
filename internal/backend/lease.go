package backend

import (
	"context"
	"sync"
	"time"
)

// holdLease keeps a lock lease alive: refresh runs every period, each
// time with a context of its own (the caller's, which bounded the wait for
// the lock, may end while the lock is held), until Unlock stops it and
// calls release once.
func holdLease(period time.Duration, refresh func(context.Context), release func() error) Unlocker {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), period)
				refresh(ctx)
				cancel()
			}
		}
	}()
	var once sync.Once
	return unlockFunc(func() error {
		var err error
		once.Do(func() {
			close(stop)
			wg.Wait()
			err = release()
		})
		return err
	})
}
