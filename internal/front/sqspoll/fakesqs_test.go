package sqspoll

// fakeSQS is an in-memory SQS queue behind httptest, speaking the protocol
// the SDK (service/sqs v1.53) uses: AWS JSON 1.0, a POST to / with
// "Content-Type: application/x-amz-json-1.0" and
// "X-Amz-Target: AmazonSQS.<Operation>", errors as a JSON body with
// "__type" and "message" plus the "x-amzn-query-error: Code;Fault" header of
// query-compatible services. It is written from the SQS API reference
// (ReceiveMessage, DeleteMessage, SendMessage, Common Errors) and the
// "Amazon SQS visibility timeout" developer guide page, not recorded from
// AWS. Modelled behaviour:
//   - a received message is hidden for the request's VisibilityTimeout, or
//     the queue's default, then becomes visible again with a new receipt
//     handle and a higher ApproximateReceiveCount;
//   - ReceiveMessage long-polls up to WaitTimeSeconds for a visible message;
//   - DeleteMessage with a receipt handle that is no longer the latest
//     succeeds but deletes nothing, as the reference says;
//   - MD5OfBody is returned, which the SDK checks.

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

type fakeMessage struct {
	id, body      string
	receipt       string // latest receipt handle
	visibleAt     time.Time
	receiveCount  int
	deleted       bool
	deletedByHand string
}

type fakeSQS struct {
	t   *testing.T
	srv *httptest.Server
	url string // the queue URL

	mu                sync.Mutex
	msgs              []*fakeMessage
	nextID            int
	defaultVisibility time.Duration
	// failReceives makes the next n ReceiveMessage calls fail with a 500.
	failReceives int
	// failStatus/failType/failQuery shape those failures.
	failStatus           int
	failType, failQuery  string
	receives, deletes    int
	receiving            int // ReceiveMessage calls in progress
	lastWait, lastVis    int32
	lastMaxMessages      int32
	lastSystemAttributes []string
}

func newFakeSQS(t *testing.T, defaultVisibility time.Duration) *fakeSQS {
	f := &fakeSQS{t: t, defaultVisibility: defaultVisibility, failStatus: http.StatusInternalServerError, failType: "InternalError"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.url = f.srv.URL + "/123456789012/lifecycle"
	return f
}

func (f *fakeSQS) send(body string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("msg-%d", f.nextID)
	f.msgs = append(f.msgs, &fakeMessage{id: id, body: body})
	return id
}

// message returns a copy of the message's state.
func (f *fakeSQS) message(id string) fakeMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		if m.id == id {
			return *m
		}
	}
	f.t.Fatalf("fake SQS has no message %s", id)
	return fakeMessage{}
}

func (f *fakeSQS) stats() (receives, deletes, receiving int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.receives, f.deletes, f.receiving
}

func (f *fakeSQS) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		f.fail(w, http.StatusBadRequest, "InvalidAction", "AWS.SimpleQueueService.InvalidAction", "expected POST / for AWS JSON 1.0")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.0" {
		f.fail(w, http.StatusBadRequest, "InvalidParameterValue", "InvalidParameterValue", "Content-Type "+ct)
		return
	}
	if r.Header.Get("Authorization") == "" {
		f.fail(w, http.StatusForbidden, "MissingAuthenticationToken", "MissingAuthenticationToken", "request is not signed")
		return
	}
	var in map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		f.fail(w, http.StatusBadRequest, "SerializationException", "SerializationException", err.Error())
		return
	}
	var queueURL string
	_ = json.Unmarshal(in["QueueUrl"], &queueURL)
	if queueURL != f.url {
		f.fail(w, http.StatusBadRequest, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue;Sender", "The specified queue does not exist.")
		return
	}
	switch target := r.Header.Get("X-Amz-Target"); target {
	case "AmazonSQS.ReceiveMessage":
		f.receive(w, r, in)
	case "AmazonSQS.DeleteMessage":
		f.delete(w, in)
	default:
		f.fail(w, http.StatusBadRequest, "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation;Sender", "fake SQS does not model "+target)
	}
}

func (f *fakeSQS) fail(w http.ResponseWriter, status int, typ, query, msg string) {
	if query != "" {
		w.Header().Set("x-amzn-query-error", query)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + typ, "message": msg})
}

func (f *fakeSQS) receive(w http.ResponseWriter, r *http.Request, in map[string]json.RawMessage) {
	var maxN, wait, vis int32
	_ = json.Unmarshal(in["MaxNumberOfMessages"], &maxN)
	_ = json.Unmarshal(in["WaitTimeSeconds"], &wait)
	_ = json.Unmarshal(in["VisibilityTimeout"], &vis)
	var sysAttrs []string
	_ = json.Unmarshal(in["MessageSystemAttributeNames"], &sysAttrs)
	if maxN == 0 {
		maxN = 1
	}
	f.mu.Lock()
	f.receives++
	f.lastWait, f.lastVis, f.lastMaxMessages, f.lastSystemAttributes = wait, vis, maxN, sysAttrs
	if f.failReceives > 0 {
		f.failReceives--
		f.mu.Unlock()
		f.fail(w, f.failStatus, f.failType, f.failQuery, "injected failure")
		return
	}
	f.receiving++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.receiving--
		f.mu.Unlock()
	}()

	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		if out := f.take(int(maxN), vis); len(out) > 0 || !time.Now().Before(deadline) {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			_ = json.NewEncoder(w).Encode(map[string]any{"Messages": out})
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// take hides up to n visible messages and renders them as ReceiveMessage
// returns them.
func (f *fakeSQS) take(n int, vis int32) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	hide := f.defaultVisibility
	if vis > 0 {
		hide = time.Duration(vis) * time.Second
	}
	now := time.Now()
	var out []map[string]any
	for _, m := range f.msgs {
		if len(out) == n {
			break
		}
		if m.deleted || now.Before(m.visibleAt) {
			continue
		}
		m.receiveCount++
		m.receipt = fmt.Sprintf("%s-receipt-%d", m.id, m.receiveCount)
		m.visibleAt = now.Add(hide)
		sum := md5.Sum([]byte(m.body))
		out = append(out, map[string]any{
			"MessageId":     m.id,
			"ReceiptHandle": m.receipt,
			"MD5OfBody":     hex.EncodeToString(sum[:]),
			"Body":          m.body,
			"Attributes":    map[string]string{"ApproximateReceiveCount": strconv.Itoa(m.receiveCount)},
		})
	}
	return out
}

func (f *fakeSQS) delete(w http.ResponseWriter, in map[string]json.RawMessage) {
	var handle string
	_ = json.Unmarshal(in["ReceiptHandle"], &handle)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes++
	found := false
	for _, m := range f.msgs {
		if m.receipt == handle && handle != "" {
			m.deleted, m.deletedByHand, found = true, handle, true
		}
	}
	if !found {
		// A handle this queue never issued (a stale one still "succeeds").
		known := false
		for _, m := range f.msgs {
			for i := 1; i <= m.receiveCount; i++ {
				if handle == fmt.Sprintf("%s-receipt-%d", m.id, i) {
					known = true
				}
			}
		}
		if !known {
			f.fail(w, http.StatusBadRequest, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid;Sender", "The input receipt handle is invalid.")
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_, _ = w.Write([]byte("{}"))
}
