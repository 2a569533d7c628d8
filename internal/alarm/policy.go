package alarm

import (
	"math/rand/v2"
	"time"
)

// Policy is the retry schedule of a failing alarm: the first retry comes
// Delay after the failure, each later one twice as long after the previous
// failure, each delay stretched by a random fraction up to Jitter.
// Cloudflare's schedule is Retries 6, Delay 2 s, Jitter 0.25.
type Policy struct {
	// Retries is how many times an alarm is retried after its first
	// failure before it is dropped; 0 drops it at the first failure.
	Retries int
	// Delay is the wait before the first retry.
	Delay time.Duration
	// Jitter is the largest fraction of a delay added at random (0.25: up
	// to 25% more); 0 means none.
	Jitter float64
	// Rand returns a number in [0, 1) for the jitter; nil means
	// math/rand/v2.Float64.
	Rand func() float64
}

// maxBackoff caps one delay, whatever Retries asks for.
const maxBackoff = 24 * time.Hour

// Backoff returns the wait before retry number retry (1 for the first).
func (p Policy) Backoff(retry int) time.Duration {
	if retry < 1 {
		retry = 1
	}
	d := p.Delay
	for i := 1; i < retry && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	if p.Jitter > 0 {
		r := p.Rand
		if r == nil {
			r = rand.Float64
		}
		d += time.Duration(float64(d) * p.Jitter * r())
	}
	return d
}
