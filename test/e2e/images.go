//go:build e2e && node

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/test/charts"
)

// The node tier pulls nothing: every image is assembled here from files
// of this machine (Debian's packages, binaries built by the test) and
// imported into containerd. An image is one uncompressed layer; a program
// from a Debian package comes with the shared libraries ldd names for it.

// imageFile is one entry of an image's layer.
type imageFile struct {
	path    string // in the image, without a leading slash
	mode    fs.FileMode
	uid     int
	data    []byte
	link    string // a symlink's target
	isDir   bool
	srcPath string // a host file to copy (instead of data)
}

// imageSpec is what an image is made of.
type imageSpec struct {
	name       string // e.g. localhost/azure-pipelines-agent:e2e
	files      map[string]imageFile
	entrypoint []string
	cmd        []string
	env        []string
	user       string
	workDir    string
}

func newImage(name string) *imageSpec {
	img := &imageSpec{name: name, files: map[string]imageFile{}}
	// Debian 12's merged /usr, so that /bin/bash and /lib/... resolve.
	for _, d := range []string{"bin", "lib", "lib64", "sbin"} {
		img.files[d] = imageFile{path: d, link: "usr/" + d, mode: 0o777}
	}
	for _, d := range []string{"usr/bin", "usr/lib", "usr/lib64", "usr/sbin", "etc", "proc", "sys", "dev", "run", "var", "var/run"} {
		img.dir(d, 0o755, 0)
	}
	img.dir("tmp", 0o1777, 0)
	return img
}

func (img *imageSpec) dir(p string, mode fs.FileMode, uid int) {
	img.files[p] = imageFile{path: p, mode: mode, uid: uid, isDir: true}
}

func (img *imageSpec) file(p string, data []byte, mode fs.FileMode, uid int) {
	img.files[p] = imageFile{path: p, mode: mode, uid: uid, data: data}
}

// usrPath is where a host path lives in an image with merged /usr.
func usrPath(p string) string {
	p = strings.TrimPrefix(filepath.Clean(p), "/")
	for _, d := range []string{"bin/", "lib/", "lib64/", "sbin/"} {
		if strings.HasPrefix(p, d) {
			return "usr/" + p
		}
	}
	return p
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// program adds a host program under its own path (or as), with the shared
// libraries it needs.
func (img *imageSpec) program(hostPath string, as ...string) error {
	real, err := filepath.EvalSymlinks(hostPath)
	if err != nil {
		return err
	}
	dst := usrPath(hostPath)
	if len(as) > 0 {
		dst = usrPath(as[0])
	}
	img.files[dst] = imageFile{path: dst, mode: 0o755, srcPath: real}
	return img.libraries(real)
}

// libraries adds what ldd says a host ELF file needs (nothing for a
// static one).
func (img *imageSpec) libraries(hostPath string) error {
	out, err := exec.Command("ldd", hostPath).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked") {
			return nil
		}
		return fmt.Errorf("ldd %s: %v: %s", hostPath, err, out)
	}
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		lib := m[1]
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", hostPath, lib, err)
		}
		dst := usrPath(lib)
		if _, ok := img.files[dst]; !ok {
			img.files[dst] = imageFile{path: dst, mode: 0o755, srcPath: real}
		}
	}
	return nil
}

// etc adds the files every image here needs: users, the loader's cache.
func (img *imageSpec) etc(extraUsers ...string) {
	passwd := "root:x:0:0:root:/root:/bin/bash\n"
	group := "root:x:0:\n"
	for _, u := range extraUsers {
		passwd += fmt.Sprintf("%s:x:1000:1000::/home/%s:/bin/bash\n", u, u)
		group += fmt.Sprintf("%s:x:1000:\n", u)
	}
	img.file("etc/passwd", []byte(passwd), 0o644, 0)
	img.file("etc/group", []byte(group), 0o644, 0)
	img.file("etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nhosts: files dns\n"), 0o644, 0)
	img.file("etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644, 0)
	if b, err := os.ReadFile("/etc/ld.so.cache"); err == nil {
		img.file("etc/ld.so.cache", b, 0o644, 0)
	}
}

// layer writes the image's one layer as an uncompressed tar.
func (img *imageSpec) layer() ([]byte, error) {
	paths := make([]string, 0, len(img.files))
	for p := range img.files {
		paths = append(paths, p)
	}
	sort.Strings(paths) // parents before children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, p := range paths {
		f := img.files[p]
		h := &tar.Header{Name: f.path, Mode: int64(f.mode.Perm()), Uid: f.uid, Gid: f.uid, ModTime: epoch, Format: tar.FormatPAX}
		if f.mode&0o1000 != 0 || f.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000 // /tmp
		}
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		case f.isDir:
			h.Typeflag, h.Name = tar.TypeDir, f.path+"/"
		default:
			data := f.data
			if f.srcPath != "" {
				b, err := os.ReadFile(f.srcPath)
				if err != nil {
					return nil, err
				}
				data = b
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// config is the image's OCI configuration for its one layer (diffID: the
// uncompressed layer's digest).
func (img *imageSpec) config(diffID string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
		"config": map[string]any{"Entrypoint": img.entrypoint, "Cmd": img.cmd, "Env": img.env, "User": img.user, "WorkingDir": img.workDir},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
}

// writeTarball writes the image as one tar that holds an OCI layout
// (what `ctr images import` reads, named by the index's
// io.containerd.image.name) and a Docker manifest.json (what `docker load`
// reads).
func (img *imageSpec) writeTarball(dst string) error {
	layer, err := img.layer()
	if err != nil {
		return err
	}
	layerDigest := sha256Digest(layer)
	config, err := img.config(layerDigest)
	if err != nil {
		return err
	}
	configDigest := sha256Digest(config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": len(layer)}},
	})
	if err != nil {
		return err
	}
	manifestDigest := sha256Digest(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": len(manifest),
			"annotations": map[string]string{"io.containerd.image.name": img.name, "org.opencontainers.image.ref.name": img.name}}},
	})
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	docker, _ := json.Marshal([]any{map[string]any{"Config": blob(configDigest), "RepoTags": []string{img.name}, "Layers": []string{blob(layerDigest)}}})

	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", docker},
		{blob(layerDigest), layer},
		{blob(configDigest), config},
		{blob(manifestDigest), manifest},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Image names the node tier's pods use (imagePullPolicy: Never).
const (
	pauseImage   = "localhost/pause:e2e"
	agentImage   = "localhost/azure-pipelines-agent"
	agentTag     = "e2e"
	agentTagV2   = "e2e-v2" // the same image under a second tag, for an upgrade
	dindImage    = "localhost/docker"
	dindTag      = "e2e-dind"
	busyboxImage = "localhost/busybox:e2e"
)

// buildImages assembles and imports the pause, agent and Docker-in-Docker
// images, and the busybox image a job loads into the nested Docker.
func (n *node) buildImages() error {
	root := filepath.Join(charts.RepoRoot(), "test", "e2e")
	build := func(pkg, out string) error {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", pkg, err, b)
		}
		return nil
	}
	pauseBin, standinBin := filepath.Join(n.imageDir, "pause"), filepath.Join(n.imageDir, "standinagent")
	if err := build("./pause", pauseBin); err != nil {
		return err
	}
	if err := build("../standinagent", standinBin); err != nil {
		return err
	}

	pause := newImage(pauseImage)
	pause.files["pause"] = imageFile{path: "pause", mode: 0o755, srcPath: pauseBin}
	pause.entrypoint = []string{"/pause"}

	// busybox: what a job's `docker load` and `docker run` use.
	busybox := newImage(busyboxImage)
	if err := busybox.program("/usr/bin/busybox"); err != nil {
		return err
	}
	out, err := exec.Command("busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			busybox.files["usr/bin/"+applet] = imageFile{path: "usr/bin/" + applet, link: "busybox", mode: 0o777}
		}
	}
	busybox.etc()
	busybox.cmd = []string{"sh"}
	busyboxTar := filepath.Join(n.imageDir, "busybox.tar")
	if err := busybox.writeTarball(busyboxTar); err != nil {
		return err
	}

	// The agent: deploy/agent's start.sh under tini, as its Dockerfile has
	// it, with the stand-in agent as config.sh and run.sh.
	agent := newImage(agentImage + ":" + agentTag)
	for _, p := range []string{"/usr/bin/bash", "/usr/bin/curl", "/usr/bin/tini", "/usr/bin/date", "/usr/bin/mktemp", "/usr/bin/cp",
		"/usr/bin/rm", "/usr/bin/grep", "/usr/bin/sleep", "/usr/bin/env", "/usr/bin/hostname", "/usr/bin/cat", "/usr/bin/mkdir",
		"/usr/bin/dirname", "/usr/bin/ls", "/usr/bin/id", "/usr/bin/whoami", "/usr/bin/stat", "/usr/bin/docker"} {
		if err := agent.program(p); err != nil {
			return err
		}
	}
	agent.files["usr/bin/sh"] = imageFile{path: "usr/bin/sh", link: "bash", mode: 0o777}
	agent.etc("agent")
	for _, d := range []string{"azp", "azp/_work", "azp/state", "home/agent"} {
		agent.dir(d, 0o755, 1000)
	}
	startSh, err := os.ReadFile(filepath.Join(charts.RepoRoot(), "deploy", "agent", "start.sh"))
	if err != nil {
		return err
	}
	agent.file("azp/start.sh", startSh, 0o755, 0)
	// The agent itself, as the Dockerfile installs it: a package (here the
	// stand-in's) that fetch-agent.sh downloads, verifies against Azure
	// DevOps' package list and unpacks into /azp/agent.
	agentDir, err := n.fetchStandinAgent(standinBin)
	if err != nil {
		return fmt.Errorf("the agent package: %w", err)
	}
	if err := agent.tree(agentDir, "azp/agent", 1000); err != nil {
		return err
	}
	agent.dir("azp/testdata", 0o755, 0)
	agent.files["azp/testdata/busybox.tar"] = imageFile{path: "azp/testdata/busybox.tar", mode: 0o644, srcPath: busyboxTar}
	agent.entrypoint = []string{"/usr/bin/tini", "--", "/azp/start.sh"}
	agent.env = []string{"PATH=/usr/local/bin:/usr/bin:/usr/sbin", "HOME=/home/agent"}
	agent.user, agent.workDir = "1000:1000", "/azp"

	// Docker-in-Docker: Debian's dockerd with its containerd, runc and
	// iptables, started as the docker:dind image's entrypoint would.
	dind := newImage(dindImage + ":" + dindTag)
	for _, p := range []string{"/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc",
		"/usr/bin/docker", "/usr/bin/docker-init", "/usr/sbin/docker-proxy", "/usr/bin/bash"} {
		if err := dind.program(p); err != nil {
			return err
		}
	}
	for _, name := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		if err := dind.program("/usr/sbin/xtables-nft-multi", "/usr/sbin/"+name); err != nil {
			return err
		}
	}
	exts, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
	for _, e := range exts {
		dind.files[usrPath(e)] = imageFile{path: usrPath(e), mode: 0o644, srcPath: e}
		if err := dind.libraries(e); err != nil {
			return err
		}
	}
	dind.etc("agent")
	dind.dir("var/lib", 0o755, 0)
	dind.dir("var/lib/docker", 0o711, 0)
	dind.dir("etc/docker", 0o755, 0)
	// The registry's CA, where Docker looks for a registry's own CA.
	certsDir := "etc/docker/certs.d/" + n.registry.addr
	dind.dir("etc/docker/certs.d", 0o755, 0)
	dind.dir(certsDir, 0o755, 0)
	dind.file(certsDir+"/ca.crt", n.registry.caPEM, 0o644, 0)
	dind.entrypoint = []string{"/usr/sbin/dockerd"}
	dind.env = []string{"PATH=/usr/local/bin:/usr/bin:/usr/sbin"}

	for _, img := range []*imageSpec{pause, agent, dind} {
		tarball := filepath.Join(n.imageDir, strings.NewReplacer("/", "_", ":", "_").Replace(img.name)+".tar")
		if err := img.writeTarball(tarball); err != nil {
			return fmt.Errorf("%s: %w", img.name, err)
		}
		if err := n.importImage(tarball); err != nil {
			return err
		}
	}
	if err := n.pushJobImage(); err != nil {
		return fmt.Errorf("the job container image: %w", err)
	}
	// The same agent image under a second tag, for an upgrade.
	return sh("ctr", "--address", n.sock, "-n", "k8s.io", "images", "tag", agentImage+":"+agentTag, agentImage+":"+agentTagV2)
}

// jobImageName is the container job's image in the registry; the image
// says so in /etc/e2e-job-image.
const jobImageName = "team-a/build"

// pushJobImage makes a container job's image as the agent needs one (bash,
// and what its user set-up runs: getent, useradd, groupadd, usermod, su)
// and puts it in the registry.
func (n *node) pushJobImage() error {
	img := newImage(jobImageName)
	for _, p := range []string{"/usr/bin/bash", "/usr/bin/cat", "/usr/bin/cut", "/usr/bin/id", "/usr/bin/whoami", "/usr/bin/getent",
		"/usr/bin/ls", "/usr/bin/stat", "/usr/bin/touch", "/usr/sbin/useradd", "/usr/sbin/groupadd", "/usr/sbin/usermod", "/usr/bin/su"} {
		if err := img.program(p); err != nil {
			return err
		}
	}
	for _, m := range []string{"pam_rootok.so", "pam_permit.so"} {
		p := "/usr/lib/x86_64-linux-gnu/security/" + m
		img.files[usrPath(p)] = imageFile{path: usrPath(p), mode: 0o644, srcPath: p}
		if err := img.libraries(p); err != nil {
			return err
		}
	}
	img.files["usr/bin/sh"] = imageFile{path: "usr/bin/sh", link: "bash", mode: 0o777}
	img.etc()
	for _, d := range []string{"usr/lib/x86_64-linux-gnu/security", "etc/pam.d", "etc/skel", "home", "root"} {
		img.dir(d, 0o755, 0)
	}
	img.file("etc/shadow", []byte("root:*:19000:0:99999:7:::\n"), 0o640, 0)
	img.file("etc/gshadow", []byte("root:*::\n"), 0o640, 0)
	img.file("etc/pam.d/su", []byte("auth sufficient pam_rootok.so\naccount required pam_permit.so\nsession required pam_permit.so\n"), 0o644, 0)
	if b, err := os.ReadFile("/etc/login.defs"); err == nil {
		img.file("etc/login.defs", b, 0o644, 0)
	}
	img.file("etc/e2e-job-image", []byte(jobImageName+"\n"), 0o644, 0)
	img.cmd = []string{"bash"}
	ref, err := n.registry.push(jobImageName, "1", img)
	n.jobImage = ref
	return err
}

// fetchStandinAgent packs the stand-in agent as the agent's package for
// linux-x64 (config.sh and run.sh, bin/, and externals/node/bin/node, the
// Node.js a job container runs), offers it from a download site and an
// Azure DevOps organization that lists its SHA-256, and installs it with
// deploy/agent/fetch-agent.sh exactly as the image build does. It returns
// the unpacked agent directory.
func (n *node) fetchStandinAgent(standinBin string) (string, error) {
	version, err := os.ReadFile(filepath.Join(charts.RepoRoot(), "deploy", "agent", "agent-version"))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(version))
	file := "vsts-agent-linux-x64-" + v + ".tar.gz"
	bin, err := os.ReadFile(standinBin)
	if err != nil {
		return "", err
	}
	var pkg bytes.Buffer
	gz := gzip.NewWriter(&pkg)
	tw := tar.NewWriter(gz)
	files := map[string][]byte{"bin/standinagent": bin, "externals/node/bin/node": bin}
	for _, cmd := range []string{"config", "run"} {
		files[cmd+".sh"] = []byte("#!/usr/bin/env bash\n# The stand-in agent (test/standinagent), in place of the agent's " + cmd +
			".sh.\nexec \"$(dirname \"$0\")/bin/standinagent\" " + cmd + " \"$@\"\n")
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names) // the same package, byte for byte, every run
	for _, name := range names {
		data := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/"+v+"/"+file {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(pkg.Bytes())
	}))
	defer site.Close()
	const buildPAT = "e2e-image-build-pat"
	ado := fakeazdo.New()
	if err := ado.Start(); err != nil {
		return "", err
	}
	defer ado.Close()
	ado.AddOrg("contoso", buildPAT).AddAgentPackage(fakeazdo.AgentPackage{Platform: "linux-x64", Version: v,
		DownloadURL: site.URL + "/" + v + "/" + file, HashValue: strings.TrimPrefix(sha256Digest(pkg.Bytes()), "sha256:")})
	tokenFile := filepath.Join(n.imageDir, "azp_token")
	if err := os.WriteFile(tokenFile, []byte(buildPAT), 0o600); err != nil {
		return "", err
	}
	dest := filepath.Join(n.imageDir, "agent")
	cmd := exec.Command("bash", filepath.Join(charts.RepoRoot(), "deploy", "agent", "fetch-agent.sh"), "", "amd64", dest)
	cmd.Env = append(os.Environ(), "AGENT_BASE_URL="+site.URL, "AZP_URL="+ado.OrgURL("contoso"), "AZP_TOKEN_FILE="+tokenFile,
		"GITHUB_API_URL=http://127.0.0.1:1") // never asked: Azure DevOps has the checksum
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("fetch-agent.sh: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "verified against Azure DevOps") {
		return "", fmt.Errorf("fetch-agent.sh did not verify against Azure DevOps' package list: %s", out)
	}
	fmt.Printf("e2e node: %s", out)
	return dest, nil
}

// tree adds a host directory's files under dir in the image, owned by uid.
func (img *imageSpec) tree(hostDir, dir string, uid int) error {
	return filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(hostDir, p)
		dst := filepath.ToSlash(filepath.Join(dir, rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			img.dir(dst, 0o755, uid)
			return nil
		}
		img.files[dst] = imageFile{path: dst, mode: info.Mode().Perm(), uid: uid, srcPath: p}
		return nil
	})
}
