package server

import (
	"container/list"
	"sync"
)

// lru is a bounded map that forgets its least recently used entries. The
// webhook side uses it to remember the outcome of recently accepted
// deliveries, so a provider's redelivery (manual "Redeliver", or a retry
// after a timeout) is answered without calling Temporal again; losing it
// (restart) is harmless: the workflow id derived from the commit still
// prevents a second build. The login rate limiter keeps its per-address
// counters in one, so no flood of addresses can grow the server's memory.
type lru[V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recent; values are *lruEntry[V]
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	val V
}

// newLRU returns the delivery cache.
func newLRU(max int) *lru[accepted] { return newCache[accepted](max) }

func newCache[V any](max int) *lru[V] {
	return &lru[V]{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruEntry[V]).val, true
}

func (c *lru[V]) add(key string, val V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*lruEntry[V]).val = val
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&lruEntry[V]{key: key, val: val})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry[V]).key)
	}
}

func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
