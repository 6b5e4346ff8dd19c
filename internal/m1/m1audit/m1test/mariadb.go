// Package m1test holds test helpers shared by the Magento 1 hardening
// packages and the end-to-end tests: a throw-away MariaDB server on a unix
// socket and a Magento-1-shaped schema to load into it.
package m1test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is a running test server. Root has no password and connects over
// Socket only (--skip-networking), so nothing outside the machine's file
// system can reach it.
type MariaDB struct {
	Socket string
	Dir    string
	cmd    *exec.Cmd
	logf   string
}

// StartMariaDB installs a fresh data directory and starts mariadbd on a unix
// socket; the server is stopped and its files removed when the test ends.
// It fails the test (never skips) when mariadbd is not installed, naming the
// Debian package to install.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	for _, bin := range []string{"mariadbd", "mariadb-install-db"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + bin); err2 != nil {
				t.Fatalf("%s not found: install the Debian package mariadb-server (apt-get install -y --no-install-recommends mariadb-server)", bin)
			}
		}
	}
	// A short directory: unix socket paths are limited to 107 bytes and
	// t.TempDir embeds the test name.
	dir, err := os.MkdirTemp("", "m1db")
	if err != nil {
		t.Fatal(err)
	}
	m := &MariaDB{Dir: dir, Socket: filepath.Join(dir, "s.sock"), logf: filepath.Join(dir, "err.log")}
	data := filepath.Join(dir, "data")
	install := exec.Command(lookBin("mariadb-install-db"), "--no-defaults", "--auth-root-authentication-method=normal",
		"--datadir="+data, "--user=root", "--skip-test-db", "--skip-name-resolve")
	if out, err := install.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	m.cmd = exec.Command(lookBin("mariadbd"), "--no-defaults", "--datadir="+data, "--socket="+m.Socket,
		"--skip-networking", "--user=root", "--pid-file="+filepath.Join(dir, "pid"), "--log-error="+m.logf,
		"--innodb-buffer-pool-size=16M", "--skip-name-resolve", "--character-set-server=utf8mb4")
	var stderr bytes.Buffer
	m.cmd.Stderr = &stderr
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start mariadbd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM) // mariadbd ignores SIGINT
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = m.cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(m.logf)
			t.Fatalf("mariadbd exited during start: %v\n%s\n%s", err, stderr.String(), tail(string(log)))
		default:
		}
		db, err := m.open("root", "", "")
		if err == nil {
			err = db.Ping()
			db.Close()
			if err == nil {
				return m
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(m.logf)
			t.Fatalf("mariadbd did not accept connections on %s within 60s: %v\n%s", m.Socket, err, tail(string(log)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lookBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return "/usr/sbin/" + name
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func (m *MariaDB) open(user, pass, dbname string) (*sql.DB, error) {
	c := mysql.NewConfig()
	c.Net, c.Addr, c.User, c.Passwd, c.DBName = "unix", m.Socket, user, pass, dbname
	c.ParseTime, c.Loc, c.MultiStatements = true, time.UTC, true
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

// Root returns a root connection to dbname ("" for none), closed when the
// test ends.
func (m *MariaDB) Root(t testing.TB, dbname string) *sql.DB {
	t.Helper()
	db, err := m.open("root", "", dbname)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// CreateStore creates database name with the Magento 1 schema (tables
// prefixed with prefix) and a user/password with SELECT on it, the access a
// read-only audit needs.
func (m *MariaDB) CreateStore(t testing.TB, name, prefix, user, password string) *sql.DB {
	t.Helper()
	root := m.Root(t, "")
	ctx := context.Background()
	for _, q := range []string{
		fmt.Sprintf("CREATE DATABASE `%s` CHARACTER SET utf8mb4", name),
		fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'localhost' IDENTIFIED BY '%s'", user, password),
		fmt.Sprintf("GRANT SELECT ON `%s`.* TO '%s'@'localhost'", name, user),
	} {
		if _, err := root.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db := m.Root(t, name)
	for _, q := range M1Schema(prefix) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("schema: %v\n%s", err, q)
		}
	}
	return db
}

// M1Schema returns CREATE TABLE statements for the Magento 1 tables the
// audit reads, with Magento 1.9's column names and types.
func M1Schema(prefix string) []string {
	return []string{
		fmt.Sprintf("CREATE TABLE `%score_config_data` (\n"+
			" config_id int unsigned NOT NULL AUTO_INCREMENT,\n"+
			" scope varchar(8) NOT NULL DEFAULT 'default',\n"+
			" scope_id int NOT NULL DEFAULT 0,\n"+
			" path varchar(255) NOT NULL DEFAULT 'general',\n"+
			" value text,\n"+
			" PRIMARY KEY (config_id), UNIQUE KEY (scope, scope_id, path))", prefix),
		fmt.Sprintf("CREATE TABLE `%scms_block` (\n"+
			" block_id smallint NOT NULL AUTO_INCREMENT,\n"+
			" title varchar(255) NOT NULL,\n"+
			" identifier varchar(255) NOT NULL,\n"+
			" content mediumtext,\n"+
			" creation_time timestamp NULL, update_time timestamp NULL,\n"+
			" is_active smallint NOT NULL DEFAULT 1,\n"+
			" PRIMARY KEY (block_id))", prefix),
		fmt.Sprintf("CREATE TABLE `%scms_page` (\n"+
			" page_id smallint NOT NULL AUTO_INCREMENT,\n"+
			" title varchar(255), root_template varchar(255), meta_keywords text, meta_description text,\n"+
			" identifier varchar(100), content_heading varchar(255),\n"+
			" content mediumtext,\n"+
			" creation_time timestamp NULL, update_time timestamp NULL,\n"+
			" is_active smallint NOT NULL DEFAULT 1, sort_order smallint NOT NULL DEFAULT 0,\n"+
			" layout_update_xml text, custom_theme varchar(100), custom_root_template varchar(255),\n"+
			" custom_layout_update_xml text, custom_theme_from date, custom_theme_to date,\n"+
			" PRIMARY KEY (page_id))", prefix),
		fmt.Sprintf("CREATE TABLE `%scms_block_store` (block_id smallint NOT NULL, store_id smallint unsigned NOT NULL, PRIMARY KEY (block_id, store_id))", prefix),
		fmt.Sprintf("CREATE TABLE `%scms_page_store` (page_id smallint NOT NULL, store_id smallint unsigned NOT NULL, PRIMARY KEY (page_id, store_id))", prefix),
		fmt.Sprintf("CREATE TABLE `%sadmin_user` (\n"+
			" user_id int unsigned NOT NULL AUTO_INCREMENT,\n"+
			" firstname varchar(32), lastname varchar(32), email varchar(128),\n"+
			" username varchar(40), password varchar(100),\n"+
			" created timestamp NOT NULL DEFAULT '0000-00-00 00:00:00',\n"+
			" modified timestamp NULL, logdate timestamp NULL,\n"+
			" lognum smallint unsigned NOT NULL DEFAULT 0,\n"+
			" reload_acl_flag smallint NOT NULL DEFAULT 0,\n"+
			" is_active smallint NOT NULL DEFAULT 1,\n"+
			" extra text, rp_token text, rp_token_created_at timestamp NULL,\n"+
			" PRIMARY KEY (user_id), UNIQUE KEY (username))", prefix),
	}
}
