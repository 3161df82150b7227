package pgnode

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// controlBytes builds a pg_control image with the given fields and a
// matching checksum.
func controlBytes(sysid uint64, state uint32, checkpoint uint64, tli, checksums uint32) []byte {
	b := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint64(b[0:], sysid)
	le.PutUint32(b[ctlOffVersion:], controlFormat)
	le.PutUint32(b[ctlOffState:], state)
	le.PutUint64(b[ctlOffCheckpoint:], checkpoint)
	le.PutUint64(b[40:], checkpoint) // checkPointCopy.redo
	le.PutUint32(b[ctlOffTimeline:], tli)
	le.PutUint32(b[ctlOffChecksumVers:], checksums)
	le.PutUint32(b[ctlOffCRC:], crc32.Checksum(b[:ctlOffCRC], castagnoli))
	return b
}

func TestParseControlFile(t *testing.T) {
	b := controlBytes(7712568260777565682, 6, 0x53A0800, 7, 1)
	cd, err := parseControlFile(b)
	if err != nil {
		t.Fatal(err)
	}
	want := controlData{systemID: 7712568260777565682, state: "in production", timeline: 7, checkpoint: 0x53A0800, checksums: true}
	if cd != want {
		t.Fatalf("parsed %+v, want %+v", cd, want)
	}

	for _, tc := range []struct {
		name  string
		state uint32
		want  string
	}{{"shut down", 1, "shut down"}, {"in recovery", 2, "shut down in recovery"}, {"archive recovery", 5, "in archive recovery"}, {"unknown", 42, "unrecognized status code"}} {
		cd, err := parseControlFile(controlBytes(1, tc.state, 1, 1, 0))
		if err != nil || cd.state != tc.want || cd.checksums {
			t.Errorf("%s: %+v, %v; want state %q, no checksums", tc.name, cd, err, tc.want)
		}
	}

	torn := controlBytes(1, 6, 1, 1, 0)
	torn[ctlOffCheckpoint] ^= 0xff
	if _, err := parseControlFile(torn); !errors.Is(err, errControlChecksum) {
		t.Fatalf("changed byte: got %v, want errControlChecksum", err)
	}
	other := controlBytes(1, 6, 1, 1, 0)
	binary.LittleEndian.PutUint32(other[ctlOffVersion:], 1700)
	if _, err := parseControlFile(other); !errors.Is(err, errControlLayout) {
		t.Fatalf("format 1700: got %v, want errControlLayout", err)
	}
	if _, err := parseControlFile(b[:100]); !errors.Is(err, errControlLayout) {
		t.Fatalf("short file: got %v, want errControlLayout", err)
	}
}

// TestReadControl_AgreesWithPgControldata compares the direct read with
// pg_controldata's report on real data directories: a running primary, a
// cleanly stopped one, a running standby and a standby shut down in
// recovery; and falls back to pg_controldata for a file it cannot parse.
func TestReadControl_AgreesWithPgControldata(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	p, sysid := bootstrapPrimary(t, ctx, base, "n1")
	s := streamingStandby(t, ctx, p, base, "n2", sysid, nil)

	compare := func(what string, n *Node, state string) {
		t.Helper()
		direct, err := readControlFile(n.Config().DataDir)
		if err != nil {
			t.Fatalf("%s: read pg_control: %v", what, err)
		}
		ran, err := n.runControlData(ctx)
		if err != nil {
			t.Fatalf("%s: pg_controldata: %v", what, err)
		}
		if direct != ran {
			t.Fatalf("%s: read %+v, pg_controldata says %+v", what, direct, ran)
		}
		if direct.state != state || direct.systemID != sysid || !direct.checksums || direct.timeline != 1 || direct.checkpoint == 0 {
			t.Fatalf("%s: %+v, want state %q, system identifier %d, checksums, timeline 1", what, direct, state, sysid)
		}
	}
	compare("running primary", p, "in production")
	compare("running standby", s, "in archive recovery")
	if err := s.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	compare("stopped standby", s, "shut down in recovery")
	if err := p.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	compare("stopped primary", p, "shut down")

	// A pg_control this code does not parse goes to pg_controldata, and
	// Inspect reports what that says.
	path := filepath.Join(s.Config().DataDir, "global", "pg_control")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[ctlOffCheckpoint] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readControlFile(s.Config().DataDir); !errors.Is(err, errControlChecksum) {
		t.Fatalf("read a damaged pg_control: got %v, want errControlChecksum", err)
	}
	info, err := s.Inspect(ctx)
	if err != nil {
		t.Fatalf("Inspect with a damaged pg_control: %v", err)
	}
	if info.SystemIdentifier != sysid || info.ClusterState != "shut down in recovery" {
		t.Fatalf("Inspect with a damaged pg_control: %+v", info)
	}
}
