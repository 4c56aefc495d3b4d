// etcd-go-bench drives etcd v3 with its own Go client (clientv3), so dengine's benchmark can
// put etcd at its best beside dengine. It runs one workload the way dengine's Python runner
// does (dengine/bench/workloads.py): preload the keys reads ask for (not timed), a short
// warm-up, then `clients` goroutines sharing `conns` client connections take operation numbers
// from one counter until `ops` are done, each timing its own calls. With -spread, connection i
// goes to endpoint i mod n instead of the leader: a follower serves reads itself (serializable
// from its own state, linearizable after a ReadIndex round with the leader) and forwards
// writes. It prints a line `start` as the timed part begins, `end` as it ends, then one JSON
// object: counts, elapsed seconds, its own CPU seconds in the timed part and latency
// percentiles (nearest rank, as dengine/bench/stats.py).
//
// Build (Debian: golang-go and golang-etcd-server-dev, no module download):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o etcd-go-bench .
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type result struct {
	Ops      int     `json:"ops"`
	Errors   int64   `json:"errors"`
	Misses   int64   `json:"misses"`
	Elapsed  float64 `json:"elapsed_s"`
	AvgMs    float64 `json:"avg_ms"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	Leader   string  `json:"leader"`
	CPUSec   float64 `json:"cpu_s"`
	FirstErr string  `json:"first_error,omitempty"`
}

// cpuSeconds is this process's user + system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func makeKey(i, width int) string {
	mod := int(math.Pow10(width))
	return fmt.Sprintf("%0*d", width, i%mod)
}

func percentile(sorted []int64, q float64) int64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(n)/100 - 1e-9))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// leader asks every endpoint for its status and returns the one that is the leader.
func leader(endpoints []string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, ep := range endpoints {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second})
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := c.Status(ctx, ep)
			cancel()
			c.Close()
			if err == nil && st.Leader != 0 && st.Header.MemberId == st.Leader {
				return ep, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no etcd leader among %s", strings.Join(endpoints, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd client endpoints")
	ops := flag.Int("ops", 10000, "timed operations")
	clients := flag.Int("clients", 1, "concurrent callers")
	conns := flag.Int("conns", 1, "client connections the callers share")
	readRatio := flag.Float64("read-ratio", 0, "share of reads (0 all writes, 1 all reads)")
	consistency := flag.String("consistency", "linearizable", "linearizable or serializable reads")
	keyBytes := flag.Int("key-bytes", 8, "key length")
	valueBytes := flag.Int("value-bytes", 256, "value length")
	keySpace := flag.Int("key-space", 10000, "distinct keys")
	warmup := flag.Int("warmup", 200, "warm-up operations (not timed)")
	preload := flag.Bool("preload", true, "write the keys reads ask for first")
	seed := flag.Int64("seed", 1, "random seed")
	timeout := flag.Duration("timeout", 10*time.Second, "per-call timeout")
	spread := flag.Bool("spread", false, "connections to every endpoint, not only the leader")
	flag.Parse()

	eps := strings.Split(*endpoints, ",")
	for i, e := range eps {
		eps[i] = strings.TrimPrefix(strings.TrimPrefix(e, "http://"), "https://")
	}
	lead, err := leader(eps, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd-go-bench:", err)
		os.Exit(2)
	}
	if *conns < 1 {
		*conns = 1
	}
	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		ep := lead
		if *spread {
			ep = eps[i%len(eps)]
		}
		cs[i], err = clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: *timeout})
		if err != nil {
			fmt.Fprintln(os.Stderr, "etcd-go-bench:", err)
			os.Exit(2)
		}
		defer cs[i].Close()
	}
	rng := rand.New(rand.NewSource(*seed))
	value := make([]byte, *valueBytes)
	rng.Read(value)
	val := string(value)
	keys := make([]string, *keySpace)
	for i := range keys {
		keys[i] = makeKey(i, *keyBytes)
	}
	n := *ops
	if *warmup > n {
		n = *warmup
	}
	reads := make([]bool, n)
	picks := make([]int, n)
	for i := range reads {
		reads[i] = *readRatio >= 1 || (*readRatio > 0 && rng.Float64() < *readRatio)
		picks[i] = rng.Intn(*keySpace)
	}
	var getOpts []clientv3.OpOption
	if *consistency == "serializable" {
		getOpts = append(getOpts, clientv3.WithSerializable())
	}
	var errs, misses int64
	var firstErr atomic.Value
	do := func(slot, i int, timed bool) (int64, bool) {
		c := cs[slot%len(cs)]
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		t0 := time.Now()
		var err error
		if reads[i%len(reads)] {
			var resp *clientv3.GetResponse
			resp, err = c.Get(ctx, keys[picks[i%len(picks)]], getOpts...)
			if err == nil && timed && len(resp.Kvs) == 0 {
				atomic.AddInt64(&misses, 1)
			}
		} else {
			_, err = c.Put(ctx, keys[i%len(keys)], val)
		}
		d := time.Since(t0).Nanoseconds()
		if err != nil {
			if timed {
				atomic.AddInt64(&errs, 1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
			return 0, false
		}
		return d, true
	}
	if *readRatio > 0 && *preload {
		width := *clients
		if width > 100 {
			width = 100
		}
		var wg sync.WaitGroup
		for w := 0; w < width; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < len(keys); i += width {
					ctx, cancel := context.WithTimeout(context.Background(), *timeout)
					cs[w%len(cs)].Put(ctx, keys[i], val)
					cancel()
				}
			}(w)
		}
		wg.Wait()
	}
	var wg sync.WaitGroup
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < *warmup; i += *clients {
				do(w, i, false)
			}
		}(w)
	}
	wg.Wait()
	var next int64 = -1
	samples := make([][]int64, *clients)
	// The caller samples the servers' CPU between these two lines.
	fmt.Println("start")
	cpu0 := cpuSeconds()
	start := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= *ops {
					return
				}
				if d, ok := do(w, i, true); ok {
					samples[w] = append(samples[w], d)
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	fmt.Println("end")
	var all []int64
	for _, s := range samples {
		all = append(all, s...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	var sum int64
	for _, d := range all {
		sum += d
	}
	r := result{Ops: len(all), Errors: errs, Misses: misses, Elapsed: elapsed, Leader: lead,
		CPUSec: cpu}
	if len(all) > 0 {
		r.AvgMs = float64(sum) / float64(len(all)) / 1e6
		r.P50Ms = float64(percentile(all, 50)) / 1e6
		r.P99Ms = float64(percentile(all, 99)) / 1e6
		r.P999Ms = float64(percentile(all, 99.9)) / 1e6
		r.MaxMs = float64(all[len(all)-1]) / 1e6
	}
	if v := firstErr.Load(); v != nil {
		r.FirstErr = v.(string)
	}
	json.NewEncoder(os.Stdout).Encode(r)
}
