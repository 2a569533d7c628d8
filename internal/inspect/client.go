package inspect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client is the API of a running app, through its admin API (see
// NewHandler). It is safe for concurrent use.
type Client struct {
	base  url.URL
	token string
	hc    *http.Client
}

var _ API = (*Client)(nil)

// RemoteError is an error the admin API answered with. Its message is the
// server's, and errors.Is matches the sentinel of its code.
type RemoteError struct {
	Status  int    // HTTP status
	Code    string // "not_found", "read_only", ... or "internal"
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// Is reports whether target is the sentinel of e's code.
func (e *RemoteError) Is(target error) bool {
	for _, c := range errorCodes {
		if c.code == e.Code {
			return target == c.err
		}
	}
	return false
}

// NewClient returns a client of the admin API at baseURL (such as
// "http://127.0.0.1:7070"), sending token. hc nil means a default client;
// deadlines come from each call's ctx. The token is sent only over HTTPS
// or to a loopback host: NewClient refuses other plain-HTTP URLs.
func NewClient(baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: admin URL %q: %v", ErrInvalid, baseURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, fmt.Errorf("%w: admin URL %q: want http://host:port", ErrInvalid, baseURL)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		return nil, fmt.Errorf("%w: admin URL %q: the token goes only to a loopback address over plain HTTP", ErrInvalid, baseURL)
	case token == "":
		return nil, fmt.Errorf("%w: empty admin token", ErrInvalid)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return &Client{base: *u, token: token, hc: hc}, nil
}

// loopbackHost reports whether host is localhost or a loopback IP.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// objectPath is the path of an object's resource.
func objectPath(ns, ref, rest string) (string, error) {
	if ref == "." || ref == ".." || ns == "." || ns == ".." {
		return "", fmt.Errorf("%w: object %q of namespace %q: give it by ID", ErrInvalid, ref, ns)
	}
	return "/v1/objects/" + url.PathEscape(ns) + "/" + url.PathEscape(ref) + rest, nil
}

// do sends a request; escapedPath is already escaped. A non-2xx answer
// becomes a *RemoteError.
func (c *Client) do(ctx context.Context, method, escapedPath string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := c.base
	u.RawPath = u.EscapedPath() + escapedPath
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, err
	}
	u.Path = p
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("inspect: admin API: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e ErrorBody
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		e = ErrorBody{Code: "internal", Message: fmt.Sprintf("inspect: admin API: %s: %s", resp.Status, bytes.TrimSpace(b))}
	}
	return nil, &RemoteError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
}

// getJSON decodes the JSON answer of a request into v.
func (c *Client) getJSON(ctx context.Context, method, path string, query url.Values, body io.Reader, v any) error {
	ct := ""
	if body != nil {
		ct = "application/json"
	}
	resp, err := c.do(ctx, method, path, query, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("inspect: admin API: reading the answer: %w", err)
	}
	return nil
}

// Namespaces implements API.
func (c *Client) Namespaces(ctx context.Context) ([]Namespace, error) {
	var v []Namespace
	return v, c.getJSON(ctx, http.MethodGet, "/v1/namespaces", nil, nil, &v)
}

// Objects implements API.
func (c *Client) Objects(ctx context.Context, namespace string) ([]Object, error) {
	var v []Object
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	return v, c.getJSON(ctx, http.MethodGet, "/v1/objects", q, nil, &v)
}

// Object implements API.
func (c *Client) Object(ctx context.Context, namespace, ref string) (Object, error) {
	var v Object
	p, err := objectPath(namespace, ref, "")
	if err != nil {
		return v, err
	}
	return v, c.getJSON(ctx, http.MethodGet, p, nil, nil, &v)
}

// Query implements API.
func (c *Client) Query(ctx context.Context, namespace, ref string, q Query) (*Result, error) {
	p, err := objectPath(namespace, ref, "/sql")
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	var v Result
	if err := c.getJSON(ctx, http.MethodPost, p, nil, bytes.NewReader(body), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// KVGet implements API.
func (c *Client) KVGet(ctx context.Context, namespace, ref string, keys []string) ([]KVEntry, error) {
	p, err := objectPath(namespace, ref, "/kv")
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return []KVEntry{}, nil
	}
	var v []KVEntry
	return v, c.getJSON(ctx, http.MethodGet, p, url.Values{"key": keys}, nil, &v)
}

// KVList implements API.
func (c *Client) KVList(ctx context.Context, namespace, ref string, opts KVList) ([]KVEntry, error) {
	p, err := objectPath(namespace, ref, "/kv")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for k, v := range map[string]string{"prefix": opts.Prefix, "start": opts.Start, "start_after": opts.StartAfter, "end": opts.End} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if opts.Reverse {
		q.Set("reverse", "1")
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var v []KVEntry
	return v, c.getJSON(ctx, http.MethodGet, p, q, nil, &v)
}

// Alarms implements API.
func (c *Client) Alarms(ctx context.Context) ([]Alarm, error) {
	var v []Alarm
	return v, c.getJSON(ctx, http.MethodGet, "/v1/alarms", nil, nil, &v)
}

// Export implements API.
func (c *Client) Export(ctx context.Context, namespace, ref string, format Format, w io.Writer) error {
	p, err := objectPath(namespace, ref, "/export")
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodGet, p, url.Values{"format": {string(format)}}, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("inspect: admin API: export: %w", err)
	}
	return nil
}

// Import implements API.
func (c *Client) Import(ctx context.Context, namespace, ref string, format Format, r io.Reader) (*ImportResult, error) {
	p, err := objectPath(namespace, ref, "/import")
	if err != nil {
		return nil, err
	}
	ct := "application/vnd.sqlite3"
	if format == FormatJSON {
		ct = "application/json"
	}
	resp, err := c.do(ctx, http.MethodPut, p, url.Values{"format": {string(format)}}, r, ct)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v ImportResult
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("inspect: admin API: reading the answer: %w", err)
	}
	return &v, nil
}

// Check implements API; progress follows the server's.
func (c *Client) Check(ctx context.Context, namespace string, progress Progress) ([]CheckResult, error) {
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/check", q, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := []CheckResult{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev CheckEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("inspect: admin API: check: %w", err)
		}
		switch {
		case ev.Error != nil:
			return nil, &RemoteError{Status: codeStatus(ev.Error.Code), Code: ev.Error.Code, Message: ev.Error.Message}
		case ev.Result != nil:
			out = append(out, *ev.Result)
		case progress != nil:
			progress(ev.Done, ev.Total)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("inspect: admin API: check: %w", err)
	}
	return out, nil
}

// codeStatus returns the HTTP status of an error code.
func codeStatus(code string) int {
	for _, c := range errorCodes {
		if c.code == code {
			return c.status
		}
	}
	return http.StatusInternalServerError
}
