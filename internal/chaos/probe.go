//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Prober asks every member's PostgreSQL, directly and all at once, whether
// it is out of recovery (a primary). Two members answering so in the same
// round is a dual-primary sample; consecutive dual samples are one window.
// The observer is never partitioned, so it sees isolated primaries too; a
// frozen or stopped server does not answer and counts as nothing.
type Prober struct {
	c    *Cluster
	h    *History
	f    *os.File
	mu   sync.Mutex
	wins []string
	open bool
	wg   sync.WaitGroup
}

// StartProber probes every interval until ctx ends, logging dual samples
// to path.
func StartProber(ctx context.Context, c *Cluster, h *History, path string, interval time.Duration) (*Prober, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	p := &Prober{c: c, h: h, f: f}
	p.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.round(ctx)
			}
		}
	})
	return p, nil
}

func (p *Prober) round(ctx context.Context) {
	at := p.h.Now()
	var mu sync.Mutex
	var primaries []string
	var wg sync.WaitGroup
	for _, n := range p.c.Nodes {
		if n.handStarted.Load() {
			continue
		}
		wg.Go(func() {
			rec, err := p.c.InRecovery(ctx, n, time.Second)
			if err == nil && !rec {
				mu.Lock()
				primaries = append(primaries, n.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Strings(primaries)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(primaries) > 1 {
		fmt.Fprintf(p.f, "%9.3fs out of recovery at once: %s\n", at.Seconds(), strings.Join(primaries, ", "))
		if !p.open {
			p.wins = append(p.wins, fmt.Sprintf("%.3fs: %s", at.Seconds(), strings.Join(primaries, ", ")))
		}
		p.open = true
	} else {
		p.open = false
	}
}

// Stop waits for the prober and returns the dual-primary windows seen.
func (p *Prober) Stop() []string {
	p.wg.Wait()
	_ = p.f.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.wins...)
}
