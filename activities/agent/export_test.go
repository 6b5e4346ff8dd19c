package agent

// KnownInodes is how many base files the agent's background hashing has
// recorded (tests wait for it).
func KnownInodes(h *HostActivities) int { return h.verified.Len() }

// Restarted is h as a new agent process would start with it: the same
// settings, nothing in memory (no background work, no hashes).
func Restarted(h *HostActivities) *HostActivities {
	return &HostActivities{Host: h.Host, Config: h.Config, Store: h.Store, Secrets: h.Secrets, PHP: h.PHP,
		HeartbeatEvery: h.HeartbeatEvery, HTTP: h.HTTP, WarmTimeout: h.WarmTimeout, HealthTimeout: h.HealthTimeout, Now: h.Now}
}
