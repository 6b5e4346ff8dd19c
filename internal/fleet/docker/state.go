package dockerfleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mageflow/mageflow/internal/fleet"
)

// groupState is what the provider records of one group: the Auto Scaling
// group's own state as AWS would hold it, and the model's bookkeeping.
type groupState struct {
	Spec     GroupSpec  `json:"spec"`
	Desired  int        `json:"desired"`
	Min      int        `json:"min"`
	Max      int        `json:"max"`
	Versions []version  `json:"versions"` // Versions[i].Number == i+1
	Current  int        `json:"current"`  // version new instances launch from
	WarmPool *warmPool  `json:"warm_pool,omitempty"`
	Members  []*member  `json:"members"`
	Events   []eventRec `json:"events,omitempty"` // last lifecycle outcomes, newest last
}

type version struct {
	Number int    `json:"number"`
	Image  string `json:"image"`
}

type warmPool struct {
	fleet.WarmPoolConfig
}

// member is one instance, live or warm. State is the lifecycle state
// Describe reports; the model's transitions are in reconcile.go.
type member struct {
	ID      string               `json:"id"`
	State   fleet.LifecycleState `json:"state"`
	Health  string               `json:"health"`
	Version int                  `json:"version"`
	Image   string               `json:"image"`
	IP      string               `json:"ip,omitempty"`
	Created time.Time            `json:"created"`
	// Origin is where a launch came from (EC2: cold, WarmPool: started from
	// the pool), for the launch action's Origin.
	Origin string `json:"origin,omitempty"`
	// ToPool: a scale-in that returns the instance to the warm pool
	// (ReuseOnScaleIn) rather than terminating it.
	ToPool bool    `json:"to_pool,omitempty"`
	Action *action `json:"action,omitempty"`
}

// action is a pending lifecycle action on a member.
type action struct {
	Hook        string        `json:"hook"`
	Token       string        `json:"token"`
	Transition  string        `json:"transition"`
	Origin      string        `json:"origin"`
	Destination string        `json:"destination"`
	Timeout     time.Duration `json:"timeout"`
	Default     fleet.Result  `json:"default"`
	Started     time.Time     `json:"started"`
	Deadline    time.Time     `json:"deadline"`
	// GlobalDeadline is Auto Scaling's global timeout: heartbeats cannot
	// hold an instance past min(48 h, 100 × timeout).
	GlobalDeadline time.Time `json:"global_deadline"`
	Notified       bool      `json:"notified"`
}

// eventRec records how an action ended, for operators reading the state
// file and for tests.
type eventRec struct {
	Time     time.Time    `json:"time"`
	Instance string       `json:"instance"`
	Hook     string       `json:"hook"`
	Token    string       `json:"token"`
	Result   fleet.Result `json:"result"`
	Expired  bool         `json:"expired,omitempty"`
}

const maxEvents = 50

func (st *groupState) version(n int) (version, bool) {
	if n < 1 || n > len(st.Versions) {
		return version{}, false
	}
	return st.Versions[n-1], true
}

func (st *groupState) member(id string) *member {
	for _, m := range st.Members {
		if m.ID == id {
			return m
		}
	}
	return nil
}

func (st *groupState) remove(id string) {
	out := st.Members[:0]
	for _, m := range st.Members {
		if m.ID != id {
			out = append(out, m)
		}
	}
	st.Members = out
}

func (st *groupState) record(m *member, a *action, r fleet.Result, expired bool, now time.Time) {
	st.Events = append(st.Events, eventRec{Time: now, Instance: m.ID, Hook: a.Hook, Token: a.Token, Result: r, Expired: expired})
	if len(st.Events) > maxEvents {
		st.Events = st.Events[len(st.Events)-maxEvents:]
	}
}

// templateRef is the group's launch template version n as fleet names it.
func (st *groupState) templateRef(n int) fleet.LaunchTemplateRef {
	v, _ := st.version(n)
	return fleet.LaunchTemplateRef{ID: templateID(st.Spec.Name), Name: templateName(st.Spec.Name), Version: fmt.Sprint(n), ImageID: v.Image}
}

func templateID(group string) string   { return "lt-docker-" + group }
func templateName(group string) string { return "mageflow-" + group }

// errNoGroup marks a missing state file inside the store.
var errNoGroup = errors.New("no such group")

func (p *Provider) statePath(group string) string {
	return filepath.Join(p.opts.StateDir, group+".json")
}

// update runs fn on the group's state under the group's file lock and
// writes the result back (temp file + rename) unless fn fails. create
// allows a missing group (fn gets a zero state).
func (p *Provider) update(group string, create bool, fn func(st *groupState) error) error {
	if !groupNameRE.MatchString(group) {
		return errNoGroup
	}
	unlock, err := p.lock(group, ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	st, err := p.read(group)
	if errors.Is(err, errNoGroup) && create {
		st, err = &groupState{}, nil
	}
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return p.write(group, st)
}

// view reads the group's state under its lock without writing.
func (p *Provider) view(group string) (*groupState, error) {
	if !groupNameRE.MatchString(group) {
		return nil, errNoGroup
	}
	unlock, err := p.lock(group, ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	return p.read(group)
}

// lock takes an exclusive flock on <group><suffix>: ".lock" guards the
// state file for the length of one read-modify-write, ".reconcile" keeps
// reconcile passes of one group (in any process) from overlapping. flock
// locks belong to the open file, so two Providers in one process exclude
// each other as two processes do, and the kernel drops the lock of a
// process that dies.
func (p *Provider) lock(group, suffix string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(p.opts.StateDir, group+suffix), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dockerfleet: open lock of group %s: %w", group, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dockerfleet: lock group %s: %w", group, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func (p *Provider) read(group string) (*groupState, error) {
	b, err := os.ReadFile(p.statePath(group))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoGroup
	}
	if err != nil {
		return nil, fmt.Errorf("dockerfleet: read state of group %s: %w", group, err)
	}
	st := &groupState{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("dockerfleet: state file %s is corrupt: %w (delete the group with DeleteGroup or remove the file and its containers)", p.statePath(group), err)
	}
	return st, nil
}

func (p *Provider) write(group string, st *groupState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(p.opts.StateDir, "."+group+".json.*")
	if err != nil {
		return fmt.Errorf("dockerfleet: write state of group %s: %w", group, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("dockerfleet: write state of group %s: %w", group, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), p.statePath(group)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("dockerfleet: write state of group %s: %w", group, err)
	}
	return nil
}

// Groups lists the groups recorded in the state directory, sorted.
func (p *Provider) Groups() ([]string, error) {
	ents, err := os.ReadDir(p.opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("dockerfleet: list groups: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			out = append(out, strings.TrimSuffix(n, ".json"))
		}
	}
	sort.Strings(out)
	return out, nil
}

// findInstance returns the group whose state lists the instance.
func (p *Provider) findInstance(id string) (string, error) {
	groups, err := p.Groups()
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		st, err := p.view(g)
		if err != nil {
			continue // deleted meanwhile
		}
		if st.member(id) != nil {
			return g, nil
		}
	}
	return "", errNoGroup
}
