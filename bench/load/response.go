package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// readResponse reads one HTTP/1.x response from br and discards its body.
// keep reports whether the connection can carry another request. It
// allocates nothing in the common case, so the load tool stays cheap next
// to the server; it understands Content-Length, chunked bodies and bodies
// delimited by the end of the connection.
func readResponse(br *bufio.Reader) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection by default, 1.0 does not
	status, err = atoi(line[9:12])
	if err != nil {
		return 0, false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errors.New("response header line too long")
			}
			return 0, false, err
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("malformed header line %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
			length = n
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(v), []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			switch {
			case bytes.EqualFold(v, []byte("close")):
				keep = false
			case bytes.EqualFold(v, []byte("keep-alive")):
				keep = true
			}
		}
	}
	switch {
	case status < 200 || status == 204 || status == 304:
		return status, keep, nil // no body
	case chunked:
		return status, keep, discardChunked(br)
	case length >= 0:
		_, err = br.Discard(int(length))
		return status, keep, err
	default: // the body ends with the connection
		_, err = io.Copy(io.Discard, br)
		return status, false, err
	}
}

// discardChunked reads a chunked body and its trailers.
func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = trimCRLF(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extension
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 62)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			break
		}
		if _, err := br.Discard(int(n) + 2); err != nil { // data and CRLF
			return err
		}
	}
	for { // trailers, up to the empty line
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(trimCRLF(line)) == 0 {
			return nil
		}
	}
}

func trimCRLF(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// atoi parses a 3-digit status code.
func atoi(b []byte) (int, error) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
