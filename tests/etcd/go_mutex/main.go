// Go clientv3's concurrency helpers against dengine's etcd API: a Mutex held by contending
// sessions (each increments a counter with a plain get then put, which only mutual exclusion
// keeps exact) and an Election (campaign, leader, resign). Prints "ok <counter>" on success.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	endpoints := strings.Split(os.Args[1], ",")
	workers, rounds := 4, 5
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		fail("dial: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "go/counter", "0"); err != nil {
		fail("put: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			m := concurrency.NewMutex(s, "go/lock")
			for i := 0; i < rounds; i++ {
				if err := m.Lock(ctx); err != nil {
					errs <- fmt.Errorf("lock: %v", err)
					return
				}
				r, err := cli.Get(ctx, "go/counter")
				if err != nil {
					errs <- err
					return
				}
				n, _ := strconv.Atoi(string(r.Kvs[0].Value))
				time.Sleep(5 * time.Millisecond)
				if _, err := cli.Put(ctx, "go/counter", strconv.Itoa(n+1)); err != nil {
					errs <- err
					return
				}
				if err := m.Unlock(ctx); err != nil {
					errs <- fmt.Errorf("unlock: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fail("worker: %v", err)
	}
	r, err := cli.Get(ctx, "go/counter")
	if err != nil {
		fail("get: %v", err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		fail("session: %v", err)
	}
	e := concurrency.NewElection(s, "go/election")
	if err := e.Campaign(ctx, "me"); err != nil {
		fail("campaign: %v", err)
	}
	l, err := e.Leader(ctx)
	if err != nil || string(l.Kvs[0].Value) != "me" {
		fail("leader: %v %v", l, err)
	}
	if err := e.Resign(ctx); err != nil {
		fail("resign: %v", err)
	}
	s.Close()
	fmt.Printf("ok %s\n", r.Kvs[0].Value)
}
