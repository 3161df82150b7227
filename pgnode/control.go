package pgnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
)

// controlData is what the agent needs of global/pg_control.
type controlData struct {
	systemID   uint64
	state      string // as pg_controldata prints it: "in production", "shut down", ...
	timeline   uint32 // the latest checkpoint's TimeLineID
	checkpoint LSN    // the latest checkpoint's location
	checksums  bool   // data page checksums on
}

// The layout of pg_control that readControlFile understands: format 1300
// (PostgreSQL 13 to 16) with 8-byte alignment, as on every 64-bit
// platform PostgreSQL runs on. Anything else (another major version's
// format, a 32-bit build, a checksum that does not match at ctlOffCRC)
// falls back to running pg_controldata.
const (
	controlFormat      = 1300
	ctlOffVersion      = 8   // uint32 pg_control_version
	ctlOffState        = 16  // DBState
	ctlOffCheckpoint   = 32  // XLogRecPtr checkPoint
	ctlOffTimeline     = 48  // checkPointCopy.ThisTimeLineID
	ctlOffChecksumVers = 252 // uint32 data_checksum_version
	ctlOffCRC          = 288 // pg_crc32c over every byte before it
)

// dbStates are pg_controldata's words for DBState's values, in order.
var dbStates = []string{"starting up", "shut down", "shut down in recovery", "shutting down",
	"in crash recovery", "in archive recovery", "in production"}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errControlLayout reports a pg_control format readControlFile does not
// parse (the caller runs pg_controldata instead).
var errControlLayout = errors.New("pgnode: pg_control layout not understood")

// readControlFile reads pg_control directly. Running pg_controldata is a
// fork and exec per call, 5 to 11 ms of CPU on the test machines, and the
// agents inspect their data directories several times around a
// switchover, exactly when the new primary's first logins wait for a CPU.
// PostgreSQL rewrites the file in place with one 8 kB write; a read that
// overlapped one fails its checksum and is read again. A checksum that
// never matches (a damaged file, or a build laid out otherwise) is left
// to pg_controldata, whose report the caller gets.
func readControlFile(dataDir string) (controlData, error) {
	path := filepath.Join(dataDir, "global", "pg_control")
	var last error
	for range 3 {
		b, err := os.ReadFile(path)
		if err != nil {
			return controlData{}, err
		}
		cd, err := parseControlFile(b)
		if err == nil || errors.Is(err, errControlLayout) {
			return cd, err
		}
		last = err
	}
	return controlData{}, fmt.Errorf("%s: %w", path, last)
}

// errControlChecksum reports a pg_control whose checksum does not match
// (a torn read, or a damaged file).
var errControlChecksum = errors.New("pgnode: pg_control checksum mismatch")

// parseControlFile decodes b, the content of pg_control.
func parseControlFile(b []byte) (controlData, error) {
	if len(b) < ctlOffCRC+4 {
		return controlData{}, fmt.Errorf("%w: %d bytes", errControlLayout, len(b))
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[ctlOffVersion:]); v != controlFormat {
		return controlData{}, fmt.Errorf("%w: format %d", errControlLayout, v)
	}
	if crc32.Checksum(b[:ctlOffCRC], castagnoli) != le.Uint32(b[ctlOffCRC:]) {
		// A torn read, a damaged file, or a build whose layout differs
		// (the checksum sits elsewhere on a 32-bit or big-endian build).
		return controlData{}, errControlChecksum
	}
	st := le.Uint32(b[ctlOffState:])
	state := "unrecognized status code"
	if int(st) < len(dbStates) {
		state = dbStates[st]
	}
	return controlData{
		systemID:   le.Uint64(b[0:]),
		state:      state,
		timeline:   le.Uint32(b[ctlOffTimeline:]),
		checkpoint: LSN(le.Uint64(b[ctlOffCheckpoint:])),
		checksums:  le.Uint32(b[ctlOffChecksumVers:]) != 0,
	}, nil
}

// readControl returns the data directory's control data: read from the
// file where its layout is known, from pg_controldata otherwise.
func (n *Node) readControl(ctx context.Context) (controlData, error) {
	cd, err := readControlFile(n.cfg.DataDir)
	if err == nil {
		return cd, nil
	}
	if !errors.Is(err, errControlLayout) {
		n.log.Debug("reading pg_control directly failed; running pg_controldata", "err", err)
	}
	return n.runControlData(ctx)
}

// runControlData runs pg_controldata and picks the fields controlData
// holds from its key/value lines.
func (n *Node) runControlData(ctx context.Context) (controlData, error) {
	m, err := n.controlDataLines(ctx)
	if err != nil {
		return controlData{}, err
	}
	var cd controlData
	if cd.systemID, err = strconv.ParseUint(m["Database system identifier"], 10, 64); err != nil {
		return cd, fmt.Errorf("pg_controldata %s: system identifier %q: %w", n.cfg.DataDir, m["Database system identifier"], err)
	}
	cd.state = m["Database cluster state"]
	if v, err := strconv.ParseUint(m["Latest checkpoint's TimeLineID"], 10, 32); err == nil {
		cd.timeline = uint32(v)
	}
	cd.checkpoint, _ = ParseLSN(m["Latest checkpoint location"])
	v := m["Data page checksum version"]
	cd.checksums = v != "" && v != "0"
	return cd, nil
}
