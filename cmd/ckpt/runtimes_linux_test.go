package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNode dumps a Node.js computation (a timer-driven loop writing a
// running hash to a file) part-way through with the ckpt binary, kills it
// and restores it: the output equals an uninterrupted run.
func TestNode(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/node")
	script := filepath.Join(t.TempDir(), "n.js")
	if err := os.WriteFile(script, []byte(`const fs = require("fs"), crypto = require("crypto");
const fd = fs.openSync(process.argv[2], "w");
let h = "seed", i = 0;
const step = () => {
  if (i === 300) { fs.closeSync(fd); return; }
  for (let k = 0; k < 200; k++) h = crypto.createHash("sha256").update(h + i).digest("hex");
  fs.writeSync(fd, i + " " + h + "\n");
  i++;
  setTimeout(step, 5);
};
step();
`), 0o600); err != nil {
		t.Fatal(err)
	}
	want, got := dumpKillRestore(t, "node", func(out string) *exec.Cmd {
		return exec.Command("/usr/bin/node", script, out)
	}, func(out string) bool { return fileSize(out) > 5000 })
	if string(got) != string(want) {
		t.Fatalf("node output differs after dump/kill/restore:\n%s\nwant:\n%s", got, want)
	}
}

// TestJava dumps a Java computation (JIT, GC and VM threads, a loop
// writing a running hash) part-way through, kills it and restores it: the
// output equals an uninterrupted run.
func TestJava(t *testing.T) {
	requireRoot(t)
	// .ci/run installs openjdk-17-jre-headless (44 MB to fetch).
	if _, err := os.Stat("/usr/bin/java"); err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatal("/usr/bin/java is not installed (.ci/run installs openjdk-17-jre-headless)")
		}
		t.Skip("/usr/bin/java is not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "H.java")
	if err := os.WriteFile(src, []byte(`import java.io.*; import java.security.*;
public class H { public static void main(String[] a) throws Exception {
  PrintWriter w = new PrintWriter(new FileWriter(a[0]), true);
  MessageDigest md = MessageDigest.getInstance("SHA-256");
  byte[] h = "seed".getBytes();
  for (int i = 0; i < 300; i++) {
    for (int k = 0; k < 2000; k++) { md.update(h); md.update((byte) i); h = md.digest(); }
    StringBuilder sb = new StringBuilder(); for (byte b : h) sb.append(String.format("%02x", b));
    w.println(i + " " + sb); Thread.sleep(5);
  }
}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	want, got := dumpKillRestore(t, "java", func(out string) *exec.Cmd {
		// Single-file source launch: compiled in memory, no javac step.
		return exec.Command("/usr/bin/java", "-Xmx128m", src, out)
	}, func(out string) bool { return fileSize(out) > 5000 })
	if string(got) != string(want) {
		t.Fatalf("java output differs after dump/kill/restore:\n%s\nwant:\n%s", got, want)
	}
}
