package aws_test

// fakeAWS is an httptest server speaking the two query protocols the SDK
// uses for these services:
//
//   - Auto Scaling, awsQuery, API version 2011-01-01: form-encoded POST
//     (Action=…&Version=2011-01-01, lists as Name.member.N), answered with
//     <OpResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
//     <OpResult>…</OpResult><ResponseMetadata>…, lists as <member>, and
//     errors as <ErrorResponse><Error><Type/><Code/><Message/></Error>…
//   - EC2, ec2Query, API version 2016-11-15: form-encoded POST (flat lists
//     Name.N, Filter.N.Value.M), answered with
//     <OpResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"> with
//     camelCase elements and lists as <item>, errors as
//     <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/>.
//
// Every request and response here is written by hand from the AWS API
// reference (Auto Scaling and EC2 API references, "Actions" pages and their
// example responses) and the user guide's lifecycle and warm pool pages. They
// are a model, NOT recordings of real AWS traffic: what they prove is that
// the real SDK clients serialise our inputs and parse these documented shapes
// as the provider expects.
//
// The model holds one group with a launch template (numbered versions,
// $Default/$Latest), a warm pool, lifecycle hooks and their pending actions,
// and images. Its behaviour is deliberately small: scale-out takes warm-pool
// instances first (as AWS does) and holds every launch in Pending:Wait until
// its action completes; scale-in by SetDesiredCapacity only records the
// number. Faults can be queued per action to exercise retries.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	asVersion  = "2011-01-01"
	ec2Version = "2016-11-15"
	asNS       = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
	ec2NS      = "http://ec2.amazonaws.com/doc/2016-11-15/"
)

type fakeInstance struct {
	ID, State, Health, LTVersion, Image, IP string
	Protected                               bool
}

type fakeAction struct {
	Token, Hook, InstanceID, Transition, Origin, Destination string
	Active                                                   bool
	Result                                                   string
	Heartbeats                                               int
}

type fakeLTVersion struct {
	Number             int
	Image, Description string
	Source             string
}

type fakeTemplate struct {
	ID, Name     string
	Default      int
	Versions     []fakeLTVersion
	clientTokens map[string]int // ClientToken → version number, for idempotency
}

type fakeWarmPool struct {
	MinSize, MaxPrepared int
	State                string
	Reuse                bool
}

type fakeImage struct {
	ID, Name, Instance, State string
	NoReboot                  bool
	describesLeft             int // DescribeImages calls answered "pending" before "available"
}

type fault struct {
	status    int
	code, msg string
}

type call struct {
	Action string
	Form   url.Values
}

type fakeAWS struct {
	t   *testing.T
	srv *httptest.Server

	mu                   sync.Mutex
	Group                string
	Desired, Min, Max    int
	LTID, LTVersion      string // what the group points at ("", a number, "$Latest", "$Default")
	LaunchHook, TermHook string // lifecycle hook names; empty: no hook
	Instances            []*fakeInstance
	Warm                 *fakeWarmPool
	WarmInstances        []*fakeInstance
	Templates            map[string]*fakeTemplate
	Images               map[string]*fakeImage
	Actions              []*fakeAction
	faults               map[string][]fault
	calls                []call
	seq                  int
	launched             int
}

func newFakeAWS(t *testing.T) *fakeAWS {
	t.Helper()
	f := &fakeAWS{
		t:          t,
		Group:      "web",
		Desired:    2,
		Min:        1,
		Max:        4,
		LTID:       "lt-0abc",
		LTVersion:  "$Default",
		LaunchHook: "mageflow-launch",
		TermHook:   "mageflow-terminate",
		Templates: map[string]*fakeTemplate{"lt-0abc": {
			ID: "lt-0abc", Name: "web-template", Default: 1,
			Versions: []fakeLTVersion{
				{Number: 1, Image: "ami-0001", Description: "first"},
				{Number: 2, Image: "ami-0002", Description: "not default yet", Source: "1"},
			},
			clientTokens: map[string]int{},
		}},
		Images: map[string]*fakeImage{},
		Warm:   &fakeWarmPool{MinSize: 1, MaxPrepared: -1, State: "Stopped", Reuse: true},
		faults: map[string][]fault{},
	}
	f.Instances = []*fakeInstance{
		{ID: "i-0aaa", State: "InService", Health: "Healthy", LTVersion: "1", Image: "ami-0001", IP: "10.0.1.10"},
		{ID: "i-0bbb", State: "InService", Health: "Healthy", LTVersion: "1", Image: "ami-0001", IP: "10.0.1.11", Protected: true},
	}
	f.WarmInstances = []*fakeInstance{
		{ID: "i-0ccc", State: "Warmed:Stopped", Health: "Healthy", LTVersion: "1", Image: "ami-0001", IP: "10.0.1.12"},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the endpoint both SDK clients point at.
func (f *fakeAWS) URL() string { return f.srv.URL }

// failNext makes the next n calls of action fail with the given fault.
func (f *fakeAWS) failNext(action string, n, status int, code, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.faults[action] = append(f.faults[action], fault{status, code, msg})
	}
}

// callsOf returns the forms of every request received for action,
// including failed attempts.
func (f *fakeAWS) callsOf(action string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []url.Values
	for _, c := range f.calls {
		if c.Action == action {
			out = append(out, c.Form)
		}
	}
	return out
}

func (f *fakeAWS) instance(id string) *fakeInstance {
	for _, in := range append(slices.Clone(f.Instances), f.WarmInstances...) {
		if in.ID == id {
			return in
		}
	}
	return nil
}

// state returns an instance's lifecycle state ("" once gone).
func (f *fakeAWS) state(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in := f.instance(id); in != nil {
		return in.State
	}
	return ""
}

// action returns a copy of the lifecycle action for the instance's latest
// launch or termination.
func (f *fakeAWS) action(instanceID string) fakeAction {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.Actions) - 1; i >= 0; i-- {
		if f.Actions[i].InstanceID == instanceID {
			return *f.Actions[i]
		}
	}
	f.t.Fatalf("fake: no lifecycle action for %s", instanceID)
	return fakeAction{}
}

// eventBridgeJSON renders the action as the EventBridge event Auto Scaling
// emits for it (user guide, "Example events for lifecycle actions").
func (f *fakeAWS) eventBridgeJSON(a fakeAction) []byte {
	detailType := "EC2 Instance-launch Lifecycle Action"
	if a.Transition == "autoscaling:EC2_INSTANCE_TERMINATING" {
		detailType = "EC2 Instance-terminate Lifecycle Action"
	}
	ev := map[string]any{
		"version":     "0",
		"id":          "12345678-1234-1234-1234-123456789012",
		"detail-type": detailType,
		"source":      "aws.autoscaling",
		"account":     "123456789012",
		"time":        "2026-11-03T10:00:00Z",
		"region":      "eu-west-1",
		"resources":   []string{"arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:0f8e:autoScalingGroupName/" + f.Group},
		"detail": map[string]any{
			"LifecycleActionToken": a.Token,
			"AutoScalingGroupName": f.Group,
			"LifecycleHookName":    a.Hook,
			"EC2InstanceId":        a.InstanceID,
			"LifecycleTransition":  a.Transition,
			"Origin":               a.Origin,
			"Destination":          a.Destination,
		},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func (f *fakeAWS) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		http.Error(w, "query protocols are form-encoded POSTs", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form := r.PostForm
	action, version := form.Get("Action"), form.Get("Version")
	// SigV4 scope names the service: proves the right client signed it.
	service := map[string]string{asVersion: "/autoscaling/aws4_request", ec2Version: "/ec2/aws4_request"}[version]
	if service == "" || !strings.Contains(r.Header.Get("Authorization"), service) {
		http.Error(w, fmt.Sprintf("unexpected Version %q or signature %q", version, r.Header.Get("Authorization")), http.StatusBadRequest)
		return
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{action, form})
	f.seq++
	reqID := fmt.Sprintf("req-%04d", f.seq)
	if q := f.faults[action]; len(q) > 0 {
		f.faults[action] = q[1:]
		f.writeError(w, version, reqID, q[0])
		return
	}
	var body x
	var ferr *fault
	if version == asVersion {
		body, ferr = f.autoScaling(action, form)
	} else {
		body, ferr = f.ec2(action, form)
	}
	if ferr != nil {
		f.writeError(w, version, reqID, *ferr)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	if version == asVersion {
		// awsQuery: <OpResponse><OpResult>…</OpResult><ResponseMetadata/>;
		// operations without output have no Result element.
		root := el(action+"Response", attr("xmlns", asNS))
		if body.name != "" {
			root.kids = append(root.kids, body)
		}
		root.kids = append(root.kids, el("ResponseMetadata", tx("RequestId", reqID)))
		root.write(&b)
	} else {
		// ec2Query: result members directly under <OpResponse>.
		root := el(action+"Response", attr("xmlns", ec2NS), tx("requestId", reqID))
		root.kids = append(root.kids, body.kids...)
		root.write(&b)
	}
	_, _ = w.Write([]byte(b.String()))
}

func (f *fakeAWS) writeError(w http.ResponseWriter, version, reqID string, flt fault) {
	var b strings.Builder
	if version == asVersion {
		typ := "Sender"
		if flt.status >= 500 {
			typ = "Receiver"
		}
		el("ErrorResponse", attr("xmlns", asNS),
			el("Error", tx("Type", typ), tx("Code", flt.code), tx("Message", flt.msg)),
			tx("RequestId", reqID)).write(&b)
	} else {
		el("Response",
			el("Errors", el("Error", tx("Code", flt.code), tx("Message", flt.msg))),
			tx("RequestID", reqID)).write(&b)
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(flt.status)
	_, _ = w.Write([]byte(b.String()))
}

func validation(format string, args ...any) *fault {
	return &fault{400, "ValidationError", fmt.Sprintf(format, args...)}
}

func (f *fakeAWS) autoScaling(action string, form url.Values) (x, *fault) {
	if g := form.Get("AutoScalingGroupName"); g != "" && g != f.Group {
		if action == "CompleteLifecycleAction" || action == "RecordLifecycleActionHeartbeat" {
			return x{}, validation("No active Lifecycle Action found with token %s", form.Get("LifecycleActionToken"))
		}
		return x{}, validation("AutoScalingGroup name not found - AutoScalingGroup %s not found", g)
	}
	switch action {
	case "DescribeAutoScalingGroups":
		var groups []x
		if form.Get("AutoScalingGroupNames.member.1") == f.Group {
			groups = append(groups, f.groupXML())
		}
		return el(action+"Result", el("AutoScalingGroups", members(groups)...)), nil

	case "DescribeWarmPool":
		if f.Warm == nil {
			return el(action + "Result"), nil
		}
		var ins []x
		for _, in := range f.WarmInstances {
			ins = append(ins, instanceXML(in, f.LTID))
		}
		return el(action+"Result",
			el("WarmPoolConfiguration",
				tx("MaxGroupPreparedCapacity", strconv.Itoa(f.Warm.MaxPrepared)),
				tx("MinSize", strconv.Itoa(f.Warm.MinSize)),
				tx("PoolState", f.Warm.State),
				el("InstanceReusePolicy", tx("ReuseOnScaleIn", strconv.FormatBool(f.Warm.Reuse)))),
			el("Instances", members(ins)...)), nil

	case "SetDesiredCapacity":
		d, _ := strconv.Atoi(form.Get("DesiredCapacity"))
		if d > f.Max {
			return x{}, validation("New SetDesiredCapacity value %d is above max value %d for the AutoScaling group.", d, f.Max)
		}
		if d < f.Min {
			return x{}, validation("New SetDesiredCapacity value %d is below min value %d for the AutoScaling group.", d, f.Min)
		}
		for range d - f.Desired {
			f.launch()
		}
		f.Desired = d
		return x{}, nil

	case "TerminateInstanceInAutoScalingGroup":
		id := form.Get("InstanceId")
		in := f.instance(id)
		if in == nil {
			return x{}, validation("Instance Id not found - No managed instance found for instance ID: %s", id)
		}
		decrement := form.Get("ShouldDecrementDesiredCapacity") == "true"
		warm := strings.HasPrefix(in.State, "Warmed:")
		if decrement && !warm {
			if f.Desired-1 < f.Min {
				return x{}, validation("Currently, desiredSize equals minSize (%d). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.", f.Min)
			}
			f.Desired--
		}
		if warm {
			in.State = "Warmed:Terminating"
			f.WarmInstances = slices.DeleteFunc(f.WarmInstances, func(i *fakeInstance) bool { return i == in })
			f.refillPool()
		} else {
			in.State = "Terminating"
			if f.TermHook != "" {
				in.State = "Terminating:Wait"
				f.newAction(f.TermHook, in.ID, "autoscaling:EC2_INSTANCE_TERMINATING", "AutoScalingGroup", "EC2")
			}
			if !decrement {
				f.launch()
			}
		}
		return el(action+"Result", el("Activity",
			tx("ActivityId", fmt.Sprintf("act-%04d", f.seq)),
			tx("AutoScalingGroupName", f.Group),
			tx("Cause", "At "+time.Now().UTC().Format(time.RFC3339)+" instance "+id+" was taken out of service in response to a user request."),
			tx("Description", "Terminating EC2 instance: "+id),
			tx("Details", `{"Subnet ID":"subnet-1"}`),
			tx("Progress", "0"),
			tx("StartTime", time.Now().UTC().Format(time.RFC3339)),
			tx("StatusCode", "InProgress"))), nil

	case "UpdateAutoScalingGroup":
		minSize, maxSize := f.Min, f.Max
		if v := form.Get("MinSize"); v != "" {
			minSize, _ = strconv.Atoi(v)
		}
		if v := form.Get("MaxSize"); v != "" {
			maxSize, _ = strconv.Atoi(v)
		}
		if minSize > maxSize {
			return x{}, validation("Max bound, %d, must be greater than or equal to min bound, %d", maxSize, minSize)
		}
		if id := form.Get("LaunchTemplate.LaunchTemplateId"); id != "" {
			lt := f.Templates[id]
			if lt == nil {
				return x{}, validation("You must use a valid fully-formed launch template. The specified launch template, with template ID %s, does not exist.", id)
			}
			v := form.Get("LaunchTemplate.Version")
			if _, ok := lt.resolve(v); !ok {
				return x{}, validation("You must use a valid fully-formed launch template. The specified launch template version %s does not exist.", v)
			}
			f.LTID, f.LTVersion = id, v
		}
		f.Min, f.Max = minSize, maxSize
		f.Desired = max(min(f.Desired, f.Max), f.Min)
		return x{}, nil

	case "PutWarmPool":
		wp := &fakeWarmPool{MaxPrepared: -1, State: "Stopped"}
		wp.MinSize, _ = strconv.Atoi(form.Get("MinSize"))
		if v := form.Get("MaxGroupPreparedCapacity"); v != "" {
			wp.MaxPrepared, _ = strconv.Atoi(v)
		}
		if v := form.Get("PoolState"); v != "" {
			wp.State = v
		}
		wp.Reuse = form.Get("InstanceReusePolicy.ReuseOnScaleIn") == "true"
		f.Warm = wp
		return el(action + "Result"), nil

	case "CompleteLifecycleAction", "RecordLifecycleActionHeartbeat":
		token, id, hook := form.Get("LifecycleActionToken"), form.Get("InstanceId"), form.Get("LifecycleHookName")
		var act *fakeAction
		for _, a := range f.Actions {
			if a.Active && a.Hook == hook && (token == "" || a.Token == token) && (id == "" || a.InstanceID == id) {
				act = a
			}
		}
		if act == nil {
			if token != "" {
				return x{}, validation("No active Lifecycle Action found with token %s", token)
			}
			return x{}, validation("No active Lifecycle Action found with instance ID %s", id)
		}
		if action == "RecordLifecycleActionHeartbeat" {
			act.Heartbeats++
			return el(action + "Result"), nil
		}
		result := form.Get("LifecycleActionResult")
		if result != "CONTINUE" && result != "ABANDON" {
			return x{}, validation("LifecycleActionResult %q must be CONTINUE or ABANDON", result)
		}
		act.Active, act.Result = false, result
		f.finish(act)
		return el(action + "Result"), nil
	}
	return x{}, &fault{400, "InvalidAction", "The action " + action + " is not valid for this web service."}
}

// launch adds one instance to the group: from the warm pool if it has one
// (Warmed:* → Pending:Wait), else a fresh one.
func (f *fakeAWS) launch() {
	origin := "EC2"
	var in *fakeInstance
	if len(f.WarmInstances) > 0 && f.WarmInstances[0].State == "Warmed:"+f.Warm.State {
		in, f.WarmInstances = f.WarmInstances[0], f.WarmInstances[1:]
		origin = "WarmPool"
	} else {
		in = f.newInstance()
	}
	in.State = "InService"
	if f.LaunchHook != "" {
		in.State = "Pending:Wait"
		f.newAction(f.LaunchHook, in.ID, "autoscaling:EC2_INSTANCE_LAUNCHING", origin, "AutoScalingGroup")
	}
	f.Instances = append(f.Instances, in)
	if origin == "WarmPool" {
		f.refillPool()
	}
}

// refillPool brings the pool back to its minimum with new instances, which
// the launch hook holds in Warmed:Pending:Wait.
func (f *fakeAWS) refillPool() {
	if f.Warm == nil {
		return
	}
	for len(f.WarmInstances) < f.Warm.MinSize {
		in := f.newInstance()
		in.State = "Warmed:" + f.Warm.State
		if f.LaunchHook != "" {
			in.State = "Warmed:Pending:Wait"
			f.newAction(f.LaunchHook, in.ID, "autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "WarmPool")
		}
		f.WarmInstances = append(f.WarmInstances, in)
	}
}

func (f *fakeAWS) newInstance() *fakeInstance {
	lt := f.Templates[f.LTID]
	v, _ := lt.resolve(f.LTVersion)
	f.launched++
	n := f.launched
	return &fakeInstance{
		ID: fmt.Sprintf("i-0new%03d", n), Health: "Healthy", LTVersion: strconv.Itoa(v.Number),
		Image: v.Image, IP: fmt.Sprintf("10.0.2.%d", n%250),
	}
}

func (f *fakeAWS) newAction(hook, id, transition, origin, dest string) {
	f.Actions = append(f.Actions, &fakeAction{
		Token: fmt.Sprintf("tok-%s-%d", id, len(f.Actions)), Hook: hook, InstanceID: id,
		Transition: transition, Origin: origin, Destination: dest, Active: true,
	})
}

// finish applies a completed action to its instance.
func (f *fakeAWS) finish(a *fakeAction) {
	in := f.instance(a.InstanceID)
	if in == nil {
		return
	}
	switch {
	case a.Transition == "autoscaling:EC2_INSTANCE_TERMINATING":
		f.Instances = slices.DeleteFunc(f.Instances, func(i *fakeInstance) bool { return i == in })
	case a.Result == "ABANDON":
		// A launch abandoned is terminated, and the group replaces it.
		f.Instances = slices.DeleteFunc(f.Instances, func(i *fakeInstance) bool { return i == in })
		f.WarmInstances = slices.DeleteFunc(f.WarmInstances, func(i *fakeInstance) bool { return i == in })
	case a.Destination == "WarmPool":
		in.State = "Warmed:" + f.Warm.State
	default:
		in.State = "InService"
	}
}

func (f *fakeAWS) groupXML() x {
	var ins []x
	for _, in := range f.Instances {
		ins = append(ins, instanceXML(in, f.LTID))
	}
	lt := el("LaunchTemplate", tx("LaunchTemplateId", f.LTID), tx("LaunchTemplateName", f.Templates[f.LTID].Name))
	if f.LTVersion != "" {
		lt.kids = append(lt.kids, tx("Version", f.LTVersion))
	}
	g := el("member",
		tx("AutoScalingGroupName", f.Group),
		tx("AutoScalingGroupARN", "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:0f8e:autoScalingGroupName/"+f.Group),
		lt,
		tx("MinSize", strconv.Itoa(f.Min)),
		tx("MaxSize", strconv.Itoa(f.Max)),
		tx("DesiredCapacity", strconv.Itoa(f.Desired)),
		tx("DefaultCooldown", "300"),
		el("AvailabilityZones", members([]x{tx("member", "eu-west-1a")})...),
		tx("HealthCheckType", "EC2"),
		tx("HealthCheckGracePeriod", "300"),
		el("Instances", members(ins)...),
		tx("CreatedTime", "2026-01-02T03:04:05.000Z"),
		tx("VPCZoneIdentifier", "subnet-1"),
		tx("NewInstancesProtectedFromScaleIn", "false"),
	)
	if f.Warm != nil {
		g.kids = append(g.kids,
			el("WarmPoolConfiguration",
				tx("MaxGroupPreparedCapacity", strconv.Itoa(f.Warm.MaxPrepared)),
				tx("MinSize", strconv.Itoa(f.Warm.MinSize)),
				tx("PoolState", f.Warm.State)),
			tx("WarmPoolSize", strconv.Itoa(len(f.WarmInstances))))
	}
	return g
}

func instanceXML(in *fakeInstance, ltID string) x {
	return el("member",
		tx("InstanceId", in.ID),
		tx("InstanceType", "t3.medium"),
		tx("AvailabilityZone", "eu-west-1a"),
		tx("LifecycleState", in.State),
		tx("HealthStatus", in.Health),
		el("LaunchTemplate", tx("LaunchTemplateId", ltID), tx("Version", in.LTVersion)),
		tx("ProtectedFromScaleIn", strconv.FormatBool(in.Protected)),
	)
}

// resolve finds a version by number or alias.
func (lt *fakeTemplate) resolve(v string) (fakeLTVersion, bool) {
	n := 0
	switch v {
	case "$Latest":
		n = lt.Versions[len(lt.Versions)-1].Number
	case "$Default", "":
		n = lt.Default
	default:
		n, _ = strconv.Atoi(v)
	}
	for _, ver := range lt.Versions {
		if ver.Number == n {
			return ver, true
		}
	}
	return fakeLTVersion{}, false
}

func (lt *fakeTemplate) versionXML(name string, v fakeLTVersion) x {
	return el(name,
		tx("launchTemplateId", lt.ID),
		tx("launchTemplateName", lt.Name),
		tx("versionNumber", strconv.Itoa(v.Number)),
		tx("versionDescription", v.Description),
		tx("createTime", "2026-01-02T03:04:05.000Z"),
		tx("createdBy", "arn:aws:iam::123456789012:role/mageflow"),
		tx("defaultVersion", strconv.FormatBool(v.Number == lt.Default)),
		el("launchTemplateData", tx("imageId", v.Image), tx("instanceType", "t3.medium")))
}

// flat returns an ec2Query flat list: Name.1, Name.2…
func flat(form url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[fmt.Sprintf("%s.%d", name, i)]
		if !ok {
			return out
		}
		out = append(out, v...)
	}
}

// filter returns the values of the named ec2Query filter.
func filter(form url.Values, name string) ([]string, bool) {
	for i := 1; ; i++ {
		n, ok := form[fmt.Sprintf("Filter.%d.Name", i)]
		if !ok {
			return nil, false
		}
		if n[0] == name {
			return flat(form, fmt.Sprintf("Filter.%d.Value", i)), true
		}
	}
}

func (f *fakeAWS) ec2(action string, form url.Values) (x, *fault) {
	switch action {
	case "DescribeInstances":
		ids, ok := filter(form, "instance-id")
		if !ok {
			return x{}, &fault{400, "InvalidParameterCombination", "this model only answers instance-id filters"}
		}
		var items []x
		for _, id := range ids {
			if in := f.instance(id); in != nil {
				items = append(items, el("item",
					tx("instanceId", in.ID),
					tx("imageId", in.Image),
					el("instanceState", tx("code", "16"), tx("name", "running")),
					tx("privateIpAddress", in.IP),
					tx("instanceType", "t3.medium"),
					tx("launchTime", "2026-01-02T03:04:05.000Z")))
			}
		}
		res := []x{}
		if len(items) > 0 {
			res = append(res, el("item",
				tx("reservationId", "r-0123"),
				tx("ownerId", "123456789012"),
				el("instancesSet", items)))
		}
		return el("", el("reservationSet", res)), nil

	case "DescribeLaunchTemplateVersions":
		lt := f.Templates[form.Get("LaunchTemplateId")]
		if lt == nil {
			for _, t := range f.Templates {
				if t.Name == form.Get("LaunchTemplateName") {
					lt = t
				}
			}
		}
		if lt == nil {
			return x{}, &fault{400, "InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist."}
		}
		var items []x
		for _, v := range flat(form, "LaunchTemplateVersion") {
			ver, ok := lt.resolve(v)
			if !ok {
				return x{}, &fault{400, "InvalidLaunchTemplateId.VersionNotFound", "Could not find launch template version " + v}
			}
			items = append(items, lt.versionXML("item", ver))
		}
		return el("", el("launchTemplateVersionSet", items)), nil

	case "CreateLaunchTemplateVersion":
		lt := f.Templates[form.Get("LaunchTemplateId")]
		if lt == nil {
			return x{}, &fault{400, "InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist."}
		}
		if n, ok := lt.clientTokens[form.Get("ClientToken")]; ok && form.Get("ClientToken") != "" {
			v, _ := lt.resolve(strconv.Itoa(n))
			return el("", lt.versionXML("launchTemplateVersion", v)), nil
		}
		src, ok := lt.resolve(form.Get("SourceVersion"))
		if !ok {
			return x{}, &fault{400, "InvalidLaunchTemplateId.VersionNotFound", "Could not find source version " + form.Get("SourceVersion")}
		}
		v := fakeLTVersion{
			Number: lt.Versions[len(lt.Versions)-1].Number + 1, Image: src.Image,
			Description: form.Get("VersionDescription"), Source: form.Get("SourceVersion"),
		}
		if img := form.Get("LaunchTemplateData.ImageId"); img != "" {
			v.Image = img
		}
		lt.Versions = append(lt.Versions, v)
		if t := form.Get("ClientToken"); t != "" {
			lt.clientTokens[t] = v.Number
		}
		return el("", lt.versionXML("launchTemplateVersion", v)), nil

	case "CreateImage":
		id, name := form.Get("InstanceId"), form.Get("Name")
		if f.instance(id) == nil {
			return x{}, &fault{400, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
		for _, img := range f.Images {
			if img.Name == name {
				return x{}, &fault{400, "InvalidAMIName.Duplicate", fmt.Sprintf("AMI name %s is already in use by AMI %s", name, img.ID)}
			}
		}
		img := &fakeImage{ID: fmt.Sprintf("ami-0new%d", len(f.Images)+1), Name: name, Instance: id,
			State: "pending", NoReboot: form.Get("NoReboot") == "true", describesLeft: 1}
		f.Images[img.ID] = img
		return el("", tx("imageId", img.ID)), nil

	case "DescribeImages":
		var found []*fakeImage
		if ids := flat(form, "ImageId"); len(ids) > 0 {
			for _, id := range ids {
				img := f.Images[id]
				if img == nil {
					return x{}, &fault{400, "InvalidAMIID.NotFound", fmt.Sprintf("The image id '[%s]' does not exist", id)}
				}
				found = append(found, img)
			}
		} else if names, ok := filter(form, "name"); ok && slices.Equal(flat(form, "Owner"), []string{"self"}) {
			for _, img := range f.Images {
				if slices.Contains(names, img.Name) {
					found = append(found, img)
				}
			}
		}
		var items []x
		for _, img := range found {
			state := img.State
			if state == "pending" {
				if img.describesLeft == 0 {
					img.State, state = "available", "available"
				} else {
					img.describesLeft--
				}
			}
			item := el("item", tx("imageId", img.ID), tx("name", img.Name), tx("imageState", state),
				tx("imageOwnerId", "123456789012"), tx("creationDate", "2026-01-02T03:04:05.000Z"))
			if state == "failed" {
				item.kids = append(item.kids, el("stateReason", tx("code", "Client.InternalError"), tx("message", "snapshot failed")))
			}
			items = append(items, item)
		}
		return el("", el("imagesSet", items)), nil
	}
	return x{}, &fault{400, "InvalidAction", "The action " + action + " is not valid for this web service."}
}

// x is a minimal XML element builder: enough for these fixtures, escaping
// text and attributes.
type x struct {
	name  string
	attrs [][2]string
	text  string
	kids  []x
}

type xattr [2]string

func attr(k, v string) xattr { return xattr{k, v} }

func el(name string, parts ...any) x {
	n := x{name: name}
	for _, p := range parts {
		switch p := p.(type) {
		case x:
			n.kids = append(n.kids, p)
		case xattr:
			n.attrs = append(n.attrs, p)
		case []x:
			n.kids = append(n.kids, p...)
		}
	}
	return n
}

func tx(name, text string) x { return x{name: name, text: text} }

func members(kids []x) []any {
	out := make([]any, 0, len(kids))
	for _, k := range kids {
		k.name = "member"
		out = append(out, k)
	}
	return out
}

func (n x) write(b *strings.Builder) {
	b.WriteString("<" + n.name)
	for _, a := range n.attrs {
		b.WriteString(" " + a[0] + `="`)
		xmlEscape(b, a[1])
		b.WriteString(`"`)
	}
	b.WriteString(">")
	xmlEscape(b, n.text)
	for _, k := range n.kids {
		k.write(b)
	}
	b.WriteString("</" + n.name + ">")
}

func xmlEscape(b *strings.Builder, s string) {
	b.WriteString(strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s))
}
