// Package artifacttest builds hostile artifacts for tests: tar+zstd
// streams written by hand, entry by entry, with nothing of the artifact
// package's own writer (which refuses what an attacker would send), and
// zstd decompression bombs.
package artifacttest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Entry is one archive entry. Type is a tar type flag (tar.TypeReg,
// tar.TypeDir, tar.TypeSymlink, …); Content is the file's content,
// Linkname the target of a link.
type Entry struct {
	Name     string
	Type     byte
	Linkname string
	Content  string
	Mode     int64 // 0 means 0644 for files, 0755 for directories, 0777 for links
}

// File, Dir and Symlink are shorthands for entries.
func File(name, content string) Entry { return Entry{Name: name, Type: tar.TypeReg, Content: content} }

// Dir is a directory entry.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir} }

// Symlink is a symbolic link entry name -> target.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Linkname: target}
}

func (e Entry) header() *tar.Header {
	h := &tar.Header{Typeflag: e.Type, Name: e.Name, Linkname: e.Linkname, Mode: e.Mode}
	if h.Mode == 0 {
		switch e.Type {
		case tar.TypeDir:
			h.Mode = 0o755
		case tar.TypeSymlink:
			h.Mode = 0o777
		default:
			h.Mode = 0o644
		}
	}
	if e.Type == tar.TypeReg {
		h.Size = int64(len(e.Content))
	}
	return h
}

// writeEntries writes entries to tw; an entry the tar format cannot hold
// is an error.
func writeEntries(tw *tar.Writer, entries []Entry) error {
	for _, e := range entries {
		if err := tw.WriteHeader(e.header()); err != nil {
			return fmt.Errorf("entry %q: %w", e.Name, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Content)); err != nil {
				return fmt.Errorf("entry %q: %w", e.Name, err)
			}
		}
	}
	return nil
}

// TarZst returns entries as a tar stream compressed with zstd, in the
// order given.
func TarZst(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeEntries(tw, entries); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return encoder.EncodeAll(buf.Bytes(), nil), nil
}

// encoder is shared: EncodeAll may be called concurrently, and a fuzz
// target calling TarZst thousands of times must not pay for a new one
// each time.
var encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))

// zstd frame constants (RFC 8878).
const (
	zstdMagic    = 0xFD2FB528
	maxBlockSize = 128 << 10
	blockRaw     = 0
	blockRLE     = 1
	window128K   = (17 - 10) << 3 // Window_Descriptor: 2^17 bytes
)

// Bomb returns a zstd-compressed tar stream holding entries and then a
// regular file name of size zero bytes. The zeros are zstd RLE blocks of
// 4 bytes per 128 KiB, so the stream is about size/32768 bytes: 24 KiB
// unpack to 768 MiB.
func Bomb(entries []Entry, name string, size int64) ([]byte, error) {
	var head bytes.Buffer
	tw := tar.NewWriter(&head)
	if err := writeEntries(tw, entries); err != nil {
		return nil, err
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size}); err != nil {
		return nil, err
	}
	// Content, its padding to 512 bytes and the two zero blocks that end
	// a tar stream: all zeros.
	zeros := (size+511)/512*512 + 1024

	out := binary.LittleEndian.AppendUint32(nil, zstdMagic)
	out = append(out, 0, window128K) // no content size, no checksum
	raw := head.Bytes()
	for len(raw) > 0 {
		n := min(len(raw), maxBlockSize)
		out = appendBlockHeader(out, blockRaw, n, false)
		out = append(out, raw[:n]...)
		raw = raw[n:]
	}
	for zeros > 0 {
		n := min(zeros, maxBlockSize)
		zeros -= n
		out = appendBlockHeader(out, blockRLE, int(n), zeros == 0)
		out = append(out, 0)
	}
	return out, nil
}

func appendBlockHeader(b []byte, typ, size int, last bool) []byte {
	h := uint32(size)<<3 | uint32(typ)<<1
	if last {
		h |= 1
	}
	return append(b, byte(h), byte(h>>8), byte(h>>16))
}
