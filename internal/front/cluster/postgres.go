package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Databases are the two PostgreSQL databases Temporal uses.
var Databases = []string{"temporal", "temporal_visibility"}

// pgRole is the PostgreSQL superuser initdb creates; Temporal connects as it.
const pgRole = "temporal"

// pgMaxConnections covers four services' pools (see serverConfig) and the tools.
const pgMaxConnections = 250

var errRootNoPGUser = errors.New("PostgreSQL refuses to run as root and the system user to run it as is missing: install postgresql-15 (make deps-cluster creates the postgres user) or pass --pg-user")

var errUnreachable = errors.New("the PostgreSQL user cannot reach its data directory through")

// postgres is the PostgreSQL instance under Dir/pg.
type postgres struct {
	bin, dataDir, pwFile, logDir string
	port                         int
	cred                         *syscall.Credential // nil: run as ourselves
	uid, gid                     int
}

func newPostgres(o *Options) (*postgres, error) {
	pg := &postgres{bin: o.PGBin, dataDir: filepath.Join(o.Dir, "pg"), pwFile: filepath.Join(o.Dir, "pg-password"),
		logDir: filepath.Join(o.Dir, "log"), port: o.Ports.Postgres, uid: -1, gid: -1}
	if os.Geteuid() != 0 {
		return pg, nil
	}
	u, err := user.Lookup(o.PGUser)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", errRootNoPGUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	pg.uid, pg.gid = uid, gid
	return pg, nil
}

func (pg *postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pg.bin, name), args...)
	cmd.Dir = "/"
	if pg.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	}
	return cmd
}

// password returns the role's password, creating it on the first run.
func (pg *postgres) password() (string, error) {
	b, err := readFileNoFollow(pg.pwFile)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if _, err := os.Lstat(filepath.Join(pg.dataDir, "PG_VERSION")); err == nil {
		return "", fmt.Errorf("%s exists but its password file %s is gone: remove %s to start afresh", pg.dataDir, pg.pwFile, pg.dataDir)
	}
	r := make([]byte, 18)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(r)
	return pw, writeFileAtomic(pg.pwFile, []byte(pw+"\n"), 0o600)
}

// initialize runs initdb once: the data directory holds PG_VERSION after.
func (pg *postgres) initialize(pw string) (bool, error) {
	if _, err := os.Lstat(filepath.Join(pg.dataDir, "PG_VERSION")); err == nil {
		return false, nil
	}
	if err := pg.ownedDir(pg.dataDir, 0o700); err != nil {
		return false, err
	}
	if err := pg.canReach(pg.dataDir); err != nil {
		return false, err
	}
	// initdb reads the password from a file its user can read: a private
	// temporary one beside the data directory, removed right after.
	tmp, err := os.MkdirTemp(filepath.Dir(pg.dataDir), ".initdb-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	if pg.cred != nil {
		if err := os.Lchown(tmp, pg.uid, pg.gid); err != nil {
			return false, err
		}
	}
	pwf := filepath.Join(tmp, "pw")
	if err := os.WriteFile(pwf, []byte(pw+"\n"), 0o600); err != nil {
		return false, err
	}
	if pg.cred != nil {
		if err := os.Lchown(pwf, pg.uid, pg.gid); err != nil {
			return false, err
		}
	}
	cmd := pg.command("initdb", "-D", pg.dataDir, "-U", pgRole, "--pwfile="+pwf, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("initdb %s: %w\n%s", pg.dataDir, err, out)
	}
	return true, nil
}

// ownedDir creates dir (not following a link) owned by the PostgreSQL
// user, or checks that an existing one is a directory that user owns.
func (pg *postgres) ownedDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	err := os.Mkdir(dir, mode)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, lerr := os.Lstat(dir)
	if lerr != nil {
		return lerr
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a link?): remove it", dir)
	}
	if pg.cred == nil {
		return nil
	}
	if err == nil { // we created it
		return os.Lchown(dir, pg.uid, pg.gid)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != pg.uid {
		return fmt.Errorf("%s belongs to uid %d, not the PostgreSQL user (uid %d): remove it or chown it", dir, st.Uid, pg.uid)
	}
	return nil
}

// canReach checks that the PostgreSQL user may traverse every directory
// above dir (a 0700 ./var would lock it out); it changes nothing.
func (pg *postgres) canReach(dir string) error {
	if pg.cred == nil {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		reach := mode&0o001 != 0 || (ok && int(st.Uid) == pg.uid && mode&0o100 != 0) || (ok && int(st.Gid) == pg.gid && mode&0o010 != 0)
		if !reach {
			return fmt.Errorf("%w: %s (mode %o): `chmod o+x %s` lets it through without letting it list the directory", errUnreachable, d, mode, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// start runs postgres in the foreground (a supervised child) on loopback,
// TCP only, and waits until it answers.
func (pg *postgres) start(ctx context.Context, pw string) (*Proc, error) {
	cmd := pg.command("postgres", "-D", pg.dataDir,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(pg.port),
		"-c", "unix_socket_directories=", "-c", "max_connections="+strconv.Itoa(pgMaxConnections))
	p, err := StartProc("postgres", pg.logDir, cmd)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, qerr := pg.query(ctx, pw, "postgres", "SELECT 1")
		if qerr == nil {
			return p, nil
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			_ = p.Stop(stopGrace)
			return nil, fmt.Errorf("PostgreSQL on 127.0.0.1:%d did not answer (%v): see %s", pg.port, qerr, filepath.Join(pg.logDir, "postgres.log"))
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// query runs one statement with psql and returns its unaligned output.
func (pg *postgres) query(ctx context.Context, pw, db, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bin, "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(pg.port), "-U", pgRole, "-d", db, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pw, "PGCONNECT_TIMEOUT=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %w: %s", sql, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// createDatabases creates the databases that do not exist yet.
func (pg *postgres) createDatabases(ctx context.Context, pw string) error {
	for _, db := range Databases {
		n, err := pg.query(ctx, pw, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+db+"'")
		if err != nil {
			return err
		}
		if n == "1" {
			continue
		}
		if _, err := pg.query(ctx, pw, "postgres", "CREATE DATABASE "+db); err != nil {
			return err
		}
	}
	return nil
}

// waitSharedMemoryFree waits until no process is attached to the System V
// shared memory segment a killed postmaster recorded in postmaster.pid
// (line 7: key and id), or the segment is gone: the check a new postmaster
// makes before it starts ("pre-existing shared memory block is still in
// use"). Its backends are not in its process group (each calls setsid), so
// killing the group does not end them; they exit on their own once they
// notice the postmaster died.
func (pg *postgres) waitSharedMemoryFree(timeout time.Duration) error {
	b, err := os.ReadFile(filepath.Join(pg.dataDir, "postmaster.pid"))
	if err != nil {
		return nil // no record: nothing to wait for
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return nil
	}
	fields := strings.Fields(lines[6])
	if len(fields) != 2 {
		return nil
	}
	id, err := strconv.Atoi(fields[1])
	if err != nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		var desc unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &desc); err != nil || desc.Nattch == 0 {
			return nil // gone (EINVAL, EIDRM) or unused: a new postmaster takes over
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes of the killed PostgreSQL still hold its shared memory (id %d) after %s", desc.Nattch, id, timeout)
		}
		time.Sleep(100 * time.Millisecond) // no event to wait on: the kernel only counts attachments
	}
}
