package milter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// maxHeaderSection bounds the header section the offline tool reads.
const maxHeaderSection = 1 << 20

// ErrMalformedHeader means the input's header section is not RFC 5322.
var ErrMalformedHeader = errors.New("milter: malformed header section")

// rawField is one header field as it stood in the input.
type rawField struct {
	name  string
	value string // after the colon, leading blanks and the final line end removed
	raw   []byte // the whole field, folded lines and line end included
}

// readHeaderSection reads a message's header section from br. sep is the
// empty line that ends it as it stood in the input, or empty when the input
// ended inside the header section.
func readHeaderSection(br *bufio.Reader) (fields []rawField, sep []byte, err error) {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, nil, fmt.Errorf("%w: line longer than %d bytes", ErrMalformedHeader, br.Size())
		}
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		total += len(line)
		if total > maxHeaderSection {
			return nil, nil, fmt.Errorf("%w: header section larger than %d bytes", ErrMalformedHeader, maxHeaderSection)
		}
		line = bytes.Clone(line)
		switch {
		case len(line) == 0:
			return fields, []byte{}, nil
		case string(line) == "\r\n" || string(line) == "\n":
			return fields, line, nil
		case line[0] == ' ' || line[0] == '\t':
			if len(fields) == 0 {
				return nil, nil, fmt.Errorf("%w: continuation line before the first field", ErrMalformedHeader)
			}
			f := &fields[len(fields)-1]
			f.raw = append(f.raw, line...)
			f.value += string(line)
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !validFieldName(line[:colon]) {
				return nil, nil, fmt.Errorf("%w: line %q is not a header field", ErrMalformedHeader, truncate(line, 40))
			}
			fields = append(fields, rawField{
				name:  string(line[:colon]),
				value: strings.TrimLeft(string(line[colon+1:]), " \t"),
				raw:   line,
			})
		}
		if len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.value = strings.TrimSuffix(strings.TrimSuffix(f.value, "\n"), "\r")
		}
		if err == io.EOF {
			return fields, []byte{}, nil
		}
	}
}

func validFieldName(b []byte) bool {
	for _, c := range b {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// SealMessage seals the RFC 5322 message read from in for the envelope
// sender and recipients given, and writes the sealed message to out. It
// runs the milter's own code path, but always seals: the operator asked.
// The payload is the input byte for byte.
func (f *Filter) SealMessage(in io.Reader, out io.Writer, sender string, rcpts []string) error {
	if len(rcpts) == 0 {
		return errors.New("milter: at least one recipient is required")
	}
	m := f.newMessage(sender, "offline")
	defer m.close()
	m.forced = true
	for _, r := range rcpts {
		m.addRecipient(r)
	}
	br := bufio.NewReaderSize(in, 64<<10)
	fields, sep, err := readHeaderSection(br)
	if err != nil {
		return err
	}
	for _, h := range fields {
		m.addHeader(h.name, h.value, h.raw)
	}
	if err := m.endHeaders(sep); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if err := m.bodyChunk(buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	rw := &rewriter{fields: fields, out: bufio.NewWriterSize(out, 64<<10)}
	if err := m.finish(rw, false); err != nil {
		return err
	}
	if !rw.wroteHeaders {
		return errors.New("milter: message was not sealed")
	}
	m.logVerdict("written", nil)
	return rw.out.Flush()
}

// rewriter is the offline editor: it applies header changes to the input's
// fields and writes them out before the first piece of the new body.
type rewriter struct {
	fields       []rawField
	out          *bufio.Writer
	wroteHeaders bool
}

func (w *rewriter) nth(index int, name string) int {
	seen := 0
	for i, f := range w.fields {
		if strings.EqualFold(f.name, name) {
			seen++
			if seen == index {
				return i
			}
		}
	}
	return -1
}

func fieldBytes(name, value string) []byte {
	value = strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n")
	return []byte(name + ": " + value + "\r\n")
}

func (w *rewriter) ChangeHeader(index int, name, value string) error {
	i := w.nth(index, name)
	if i < 0 {
		return nil // like an MTA: changing a missing field does nothing
	}
	if value == "" {
		w.fields = append(w.fields[:i], w.fields[i+1:]...)
		return nil
	}
	w.fields[i].raw = fieldBytes(name, value)
	return nil
}

func (w *rewriter) AddHeader(name, value string) error {
	w.fields = append(w.fields, rawField{name: name, value: value, raw: fieldBytes(name, value)})
	return nil
}

func (w *rewriter) ReplaceBody(chunk []byte) error {
	if !w.wroteHeaders {
		for _, f := range w.fields {
			raw := f.raw
			if !bytes.HasSuffix(raw, []byte("\n")) {
				// The input ended inside its last field: end the field, or
				// the next header would be glued onto it.
				raw = slices.Concat(bytes.TrimSuffix(raw, []byte("\r")), []byte("\r\n"))
			}
			if _, err := w.out.Write(raw); err != nil {
				return err
			}
		}
		if _, err := w.out.WriteString("\r\n"); err != nil {
			return err
		}
		w.wroteHeaders = true
	}
	_, err := w.out.Write(chunk)
	return err
}
