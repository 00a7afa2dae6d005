#!/usr/bin/env python3
"""Static checks of rapport's deployment files, for deploy/check.sh.

    deploycheck.py static DEPLOY_DIR          Dockerfile, compose file, Kubernetes
                                              manifests, example configuration
    deploycheck.py dockerfile DOCKERFILE      one instruction a line:
                                              STAGE<TAB>INSTRUCTION<TAB>ARGUMENTS
    deploycheck.py extract DEPLOY_DIR OUT_DIR writes OUT_DIR/k8s.conf (the file the
                                              pod's init container assembles) and
                                              OUT_DIR/gen.args (compose's gen command,
                                              one argument a line)

`static` prints one line per check ("ok ..." or "FAIL ...") and exits 1 if
any failed.  Needs python3-yaml.  Nothing here talks to a network, a Docker
engine or a cluster.
"""
import json
import os
import re
import shlex
import sys

try:
    import yaml
except ImportError:  # reported by check.sh, which installs nothing itself
    sys.stderr.write("deploycheck: python3-yaml is missing (run deploy/install-deps.sh)\n")
    sys.exit(2)


class Report:
    def __init__(self):
        self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            print("ok   " + what)
        else:
            self.failed += 1
            print("FAIL " + what + (": " + detail if detail else ""))
        return cond


# --------------------------------------------------------------- Dockerfile

def dockerfile_parse(path):
    """Returns (global_args, stages); stages is a list of
    {"name", "from", "instrs": [(INSTR, args)]}.  Joins continuation lines,
    drops comments."""
    lines, cur = [], ""
    with open(path) as f:
        for raw in f:
            s = raw.rstrip("\n")
            if not cur and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if cur and s.lstrip().startswith("#"):
                continue  # a comment inside a continued instruction
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            cur += s
            lines.append(" ".join(cur.split()) if not cur.lstrip().upper().startswith("RUN")
                         else cur.strip())
            cur = ""
    if cur:
        lines.append(cur.strip())
    global_args, stages = {}, []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            stages.append({"name": m.group(2) or str(len(stages)), "from": m.group(1), "instrs": []})
        elif not stages:
            if instr == "ARG":
                k, _, v = rest.partition("=")
                global_args[k] = v
        else:
            stages[-1]["instrs"].append((instr, rest))
    return global_args, stages


def expand(s, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), s)


def apt_packages(run):
    """Packages named by `apt-get install` in one RUN command."""
    pkgs = []
    for part in re.split(r"&&|;", run):
        words = part.split()
        if "apt-get" in words and "install" in words:
            for w in words[words.index("install") + 1:]:
                if not w.startswith("-"):
                    pkgs.append(w)
    return pkgs


def install_deps_packages(deploy):
    with open(os.path.join(deploy, "install-deps.sh")) as f:
        text = f.read()
    m = re.search(r'^PKGS="([^"]*)"', text, re.M)
    return m.group(1).replace("\\\n", " ").split() if m else []


def check_dockerfile(r, deploy):
    path = os.path.join(deploy, "Dockerfile")
    gargs, stages = dockerfile_parse(path)
    r.check(len(stages) >= 2, "Dockerfile: multi-stage (%d stages)" % len(stages))
    for st in stages:
        base = expand(st["from"], gargs)
        r.check(re.match(r"(docker\.io/(library/)?)?debian:bookworm(-slim)?(@sha256:[0-9a-f]+)?$", base)
                is not None, "Dockerfile: stage %s is Debian bookworm (%s)" % (st["name"], base))
    build, runtime = stages[0], stages[-1]
    ins = runtime["instrs"]

    def last(kind, instrs=ins):
        found = [a for i, a in instrs if i == kind]
        return found[-1] if found else None

    build_pkgs = [p for i, a in build["instrs"] if i == "RUN" for p in apt_packages(a)]
    run_pkgs = [p for i, a in ins if i == "RUN" for p in apt_packages(a)]
    # Criterion and clang's runtimes (libFuzzer, sanitizers) are for the
    # tests and `make fuzz`, not for building the image.
    wanted_dev = [p for p in install_deps_packages(deploy)
                  if p.endswith("-dev") and p not in ("libcriterion-dev", "libclang-rt-dev")] \
        + ["build-essential", "pkg-config"]
    missing = [p for p in wanted_dev if p not in build_pkgs]
    r.check(not missing, "Dockerfile: build stage installs build-essential, pkg-config and the "
            "-dev packages of install-deps.sh", "missing " + " ".join(missing))
    extra = [p for p in build_pkgs if p not in wanted_dev]
    r.check(not extra, "Dockerfile: build stage installs nothing beyond those", " ".join(extra))
    need_rt = ["librdkafka1", "libavro23", "libhiredis0.14", "libjansson4", "libcurl4", "libmicrohttpd12"]
    r.check(all(p in run_pkgs for p in need_rt), "Dockerfile: runtime stage installs " + " ".join(need_rt),
            "has " + " ".join(run_pkgs))
    r.check(not any(p.endswith("-dev") or p in ("build-essential", "gcc", "make") for p in run_pkgs),
            "Dockerfile: runtime stage installs no compiler or -dev package")
    for st in stages:
        for i, a in st["instrs"]:
            if i == "RUN" and "apt-get install" in a:
                r.check("--no-install-recommends" in a and "rm -rf /var/lib/apt/lists" in a
                        and "apt-get update" in a,
                        "Dockerfile: stage %s: apt-get update, install --no-install-recommends, "
                        "lists removed, in one RUN" % st["name"])
    makes = [a for i, a in build["instrs"] if i == "RUN" and re.search(r"\bmake\b", a)]
    r.check(bool(makes), "Dockerfile: build stage runs make")
    names = [s["name"] for s in stages]
    for i, a in ins:
        m = re.match(r"--from=(\S+)", a) if i == "COPY" else None
        if m:
            r.check(m.group(1) in names, "Dockerfile: COPY --from=%s names a stage" % m.group(1))
    user = last("USER")
    r.check(user is not None and re.match(r"^[1-9][0-9]*(:[1-9][0-9]*)?$", user) is not None,
            "Dockerfile: runtime USER is a numeric non-root uid (%s)" % user)
    useradd = [a for i, a in ins if i == "RUN" and "useradd" in a]
    uid = (user or "").split(":")[0]
    r.check(bool(useradd) and ("--uid %s" % uid) in useradd[0],
            "Dockerfile: runtime stage creates the user with uid %s" % uid)
    expose = " ".join(a for i, a in ins if i == "EXPOSE").split()
    r.check("9464" in expose or "9464/tcp" in expose, "Dockerfile: EXPOSE 9464")
    hc = last("HEALTHCHECK")
    tool = hc and next((t for t in ("curl", "wget") if re.search(r"\b%s\b" % t, hc)), None)
    r.check(hc is not None and "/healthz" in hc and ":9464" in hc,
            "Dockerfile: HEALTHCHECK polls /healthz on 9464")
    r.check(tool is not None and tool in run_pkgs,
            "Dockerfile: the HEALTHCHECK's tool (%s) is installed in the runtime stage" % tool)
    ep, cmd = last("ENTRYPOINT"), last("CMD")
    r.check(ep is not None and json.loads(ep) == ["rapport"], 'Dockerfile: ENTRYPOINT ["rapport"]', str(ep))
    r.check(cmd is not None and json.loads(cmd) == ["run", "-c", "/etc/rapport/rapport.conf"],
            'Dockerfile: CMD ["run","-c","/etc/rapport/rapport.conf"]', str(cmd))
    stop = last("STOPSIGNAL")
    r.check(stop in (None, "SIGTERM", "15"), "Dockerfile: stop signal is SIGTERM")
    r.check(not any(i == "ADD" for s in stages for i, _ in s["instrs"]), "Dockerfile: no ADD")
    return uid


# ------------------------------------------------------------ configuration

def conf_read(text):
    """key -> value of rapport.conf text (last one wins, as rapport does)."""
    out = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#") or "=" not in s:
            continue
        k, _, v = s.partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1]
        out[k.strip()] = v
    return out


def listen_port(conf):
    v = conf.get("metrics_listen", ":9464")
    return int(v.rsplit(":", 1)[1]) if v and ":" in v else None


def check_example_conf(r, deploy):
    cfgdoc = os.path.join(deploy, "..", "docs", "CONFIG.md")
    with open(cfgdoc) as f:
        keys = [k for k in re.findall(r"^\| `([a-z_.<>]+)` \|", f.read(), re.M) if not k.startswith("kafka.")]
    with open(os.path.join(deploy, "rapport.conf.example")) as f:
        text = f.read()
    missing = [k for k in keys if not re.search(r"^#?\s*%s\s*=" % re.escape(k), text, re.M)]
    r.check(len(keys) > 20 and not missing,
            "rapport.conf.example: shows all %d keys of docs/CONFIG.md" % len(keys), "missing " + " ".join(missing))


# ------------------------------------------------------------------ compose

def duration_s(v):
    m = re.match(r"^(?:(\d+)m)?(?:(\d+)s)?$", str(v))
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0) if m else 0


def check_compose(r, deploy):
    path = os.path.join(deploy, "docker-compose.yml")
    with open(path) as f:
        doc = yaml.safe_load(f)
    r.check(isinstance(doc, dict), "docker-compose.yml: parses as YAML")
    svc = doc.get("services", {})
    for name in ("kafka", "kafka-init", "redis", "gen", "rapport"):
        r.check(name in svc, "docker-compose.yml: service %s" % name)
    if not all(n in svc for n in ("kafka", "kafka-init", "redis", "gen", "rapport")):
        return
    kafka, init, redis, gen, rap = (svc[n] for n in ("kafka", "kafka-init", "redis", "gen", "rapport"))
    env = kafka.get("environment", {})
    r.check(":" in kafka.get("image", "") and not kafka["image"].endswith(":latest"),
            "docker-compose.yml: kafka image pinned (%s)" % kafka.get("image"))
    r.check(set(str(env.get("KAFKA_PROCESS_ROLES", "")).split(",")) == {"broker", "controller"}
            and "KAFKA_CONTROLLER_QUORUM_VOTERS" in env and "CLUSTER_ID" in env
            and not any("ZOOKEEPER" in k for k in env),
            "docker-compose.yml: kafka is one KRaft node (broker+controller, no ZooKeeper)")
    r.check("healthcheck" in kafka and "healthcheck" in redis, "docker-compose.yml: kafka and redis have healthchecks")
    conf_path = None
    for v in rap.get("volumes", []):
        src, _, rest = v.partition(":")
        if rest.split(":")[0] == "/etc/rapport/rapport.conf":
            conf_path = os.path.normpath(os.path.join(deploy, src))
    r.check(conf_path is not None and os.path.isfile(conf_path),
            "docker-compose.yml: rapport mounts an existing rapport.conf (%s)" % conf_path)
    conf = {}
    if conf_path and os.path.isfile(conf_path):
        with open(conf_path) as f:
            conf = conf_read(f.read())
    topic = conf.get("topic", "interactions")
    adv = str(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    r.check(conf.get("brokers") and ("://" + conf["brokers"]) in adv,
            "docker-compose.yml: rapport's brokers (%s) is kafka's advertised listener" % conf.get("brokers"))
    r.check(re.match(r"redis://redis(:6379)?(/\d+)?$", conf.get("redis_url", "")) is not None,
            "docker-compose.yml: rapport's redis_url names the redis service")
    script = " ".join(init.get("command", [])) if isinstance(init.get("command"), list) else str(init.get("command"))
    r.check("kafka-topics.sh" in script and "--create" in script and topic in script
            and (topic + ".dlq") in script and "--if-not-exists" in script,
            "docker-compose.yml: kafka-init creates %s and %s.dlq" % (topic, topic))
    r.check(init.get("depends_on", {}).get("kafka", {}).get("condition") == "service_healthy",
            "docker-compose.yml: kafka-init waits for a healthy kafka")
    for name, s in (("rapport", rap), ("gen", gen)):
        b = s.get("build", {})
        ctx = os.path.normpath(os.path.join(deploy, b.get("context", ".")))
        r.check(os.path.isfile(os.path.join(ctx, b.get("dockerfile", "Dockerfile")))
                and os.path.isfile(os.path.join(ctx, "Makefile")),
                "docker-compose.yml: %s is built from deploy/Dockerfile with the repository as context" % name)
        r.check(s.get("depends_on", {}).get("kafka-init", {}).get("condition") == "service_completed_successfully",
                "docker-compose.yml: %s starts after the topics exist" % name)
    r.check(rap.get("depends_on", {}).get("redis", {}).get("condition") == "service_healthy",
            "docker-compose.yml: rapport waits for a healthy redis")
    r.check(rap.get("command", ["run", "-c", "/etc/rapport/rapport.conf"]) == ["run", "-c", "/etc/rapport/rapport.conf"],
            "docker-compose.yml: rapport runs `run -c /etc/rapport/rapport.conf`")
    r.check(duration_s(rap.get("stop_grace_period", "10s")) >= 15,
            "docker-compose.yml: rapport's stop_grace_period >= 15s (%s)" % rap.get("stop_grace_period"))
    r.check(any(str(p).split(":")[-1].split("/")[0] == str(listen_port(conf)) for p in rap.get("ports", [])),
            "docker-compose.yml: rapport publishes its metrics port %s" % listen_port(conf))
    r.check(rap.get("read_only") is True and "ALL" in rap.get("cap_drop", []),
            "docker-compose.yml: rapport runs with a read-only root and no capabilities")
    # The schema volume: gen writes it, rapport reads it at schema_dir.
    cmd = gen.get("command", [])
    r.check(isinstance(cmd, list) and cmd[:1] == ["gen"], "docker-compose.yml: gen runs `rapport gen`")

    def opt(name):
        return cmd[cmd.index(name) + 1] if name in cmd and cmd.index(name) + 1 < len(cmd) else None

    r.check(opt("-b") == conf.get("brokers") and opt("-t") == topic,
            "docker-compose.yml: gen produces to rapport's brokers and topic")
    r.check(opt("--rate") == "200" and opt("--customers") == "1000",
            "docker-compose.yml: gen --rate 200 --customers 1000")

    def mount(s, vol):
        for v in s.get("volumes", []):
            parts = v.split(":")
            if parts[0] == vol:
                return parts[1]
        return None

    sd = conf.get("schema_dir")
    r.check(opt("--schema-dir") is not None and mount(gen, "schemas") == opt("--schema-dir")
            and mount(rap, "schemas") == sd and "schemas" in (doc.get("volumes") or {}),
            "docker-compose.yml: gen --schema-dir and rapport's schema_dir (%s) are the same volume" % sd)
    r.check((gen.get("healthcheck") or {}).get("disable") is True,
            "docker-compose.yml: gen disables the image's /healthz check (it serves no metrics)")


# --------------------------------------------------------------- Kubernetes

POD_KEYS = {"affinity", "automountServiceAccountToken", "containers", "enableServiceLinks", "initContainers",
            "nodeSelector", "priorityClassName", "securityContext", "serviceAccountName",
            "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
            "imagePullSecrets"}
CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "ports",
                  "livenessProbe", "readinessProbe", "startupProbe", "resources", "securityContext",
                  "volumeMounts", "lifecycle", "workingDir"}
PROBE_KEYS = {"httpGet", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold",
              "successThreshold", "terminationGracePeriodSeconds"}
CSC_KEYS = {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot", "runAsUser", "runAsGroup",
            "capabilities", "seccompProfile", "privileged"}


def k8s_load(deploy):
    kdir = os.path.join(deploy, "k8s")
    docs = {}
    for fn in sorted(os.listdir(kdir)):
        if fn.endswith((".yaml", ".yml")):
            with open(os.path.join(kdir, fn)) as f:
                docs[fn] = [d for d in yaml.safe_load_all(f) if d is not None]
    return kdir, docs


def check_k8s(r, deploy, image_uid):
    kdir, files = k8s_load(deploy)
    r.check(bool(files), "k8s: manifests parse as YAML (%s)" % ", ".join(files))
    by_kind = {}
    for fn, docs in files.items():
        for d in docs:
            r.check(isinstance(d, dict) and "kind" in d and "apiVersion" in d, "k8s: %s: object with kind and apiVersion" % fn)
            by_kind.setdefault(d.get("kind"), []).append((fn, d))
    for kind in ("Deployment", "ConfigMap", "Service", "Secret", "PodDisruptionBudget", "Kustomization"):
        r.check(kind in by_kind, "k8s: has a %s" % kind)
    if not all(k in by_kind for k in ("Deployment", "ConfigMap", "Service", "Secret")):
        return
    kust = by_kind.get("Kustomization", [(None, {})])[0][1]
    res = kust.get("resources", [])
    secret_file = by_kind["Secret"][0][0]
    r.check(all(os.path.isfile(os.path.join(kdir, x)) for x in res)
            and set(res) == {fn for fn in files if fn not in ("kustomization.yaml", secret_file)},
            "k8s: kustomization.yaml lists every manifest but the example Secret")
    dep = by_kind["Deployment"][0][1]
    cm = by_kind["ConfigMap"][0][1]
    svc = by_kind["Service"][0][1]
    sec = by_kind["Secret"][0][1]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    conf = conf_read(cm.get("data", {}).get("rapport.conf", ""))
    port = listen_port(conf)
    r.check("rapport.conf" in cm.get("data", {}), "k8s: ConfigMap %s holds rapport.conf" % cm["metadata"]["name"])
    r.check("secret.conf" in (sec.get("stringData") or sec.get("data") or {}),
            "k8s: Secret %s holds secret.conf" % sec["metadata"]["name"])
    secret_conf = conf_read((sec.get("stringData") or {}).get("secret.conf", ""))
    r.check("redis_url" in secret_conf and "redis_url" not in conf,
            "k8s: redis_url (with its password) is in the Secret, not the ConfigMap")
    r.check(not any(k.endswith("password") for k in conf), "k8s: no password in the ConfigMap")
    r.check(spec.get("replicas", 1) >= 2, "k8s: Deployment runs %s replicas" % spec.get("replicas"))
    r.check(conf.get("group") is not None, "k8s: every replica uses group %s" % conf.get("group"))
    r.check(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
            "k8s: Deployment selector matches its pod labels")
    ru = spec.get("strategy", {}).get("rollingUpdate", {})
    r.check(ru.get("maxSurge") == 0, "k8s: rolling update replaces pods without surge")
    shutdown_s = int(conf.get("shutdown_timeout_ms", "5000")) / 1000.0
    tg = pod.get("terminationGracePeriodSeconds", 30)
    r.check(tg >= 15 and tg > shutdown_s + 2,
            "k8s: terminationGracePeriodSeconds %s >= 15 and above shutdown_timeout_ms (%gs)" % (tg, shutdown_s))
    bad = set(pod) - POD_KEYS
    r.check(not bad, "k8s: pod spec has only known fields", " ".join(sorted(bad)))
    psc = pod.get("securityContext", {})
    r.check(psc.get("runAsNonRoot") is True and str(psc.get("runAsUser")) == str(image_uid) and psc.get("runAsUser") != 0,
            "k8s: pod runs as non-root uid %s, the image's USER" % psc.get("runAsUser"))
    r.check(pod.get("automountServiceAccountToken") is False, "k8s: no service account token mounted")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    r.check(any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in volumes.values()),
            "k8s: the pod mounts ConfigMap %s" % cm["metadata"]["name"])
    r.check(any(v.get("secret", {}).get("secretName") == sec["metadata"]["name"] for v in volumes.values()),
            "k8s: the pod mounts Secret %s" % sec["metadata"]["name"])
    all_c = pod.get("initContainers", []) + pod.get("containers", [])
    for c in all_c:
        n = c.get("name")
        bad = set(c) - CONTAINER_KEYS
        r.check(not bad, "k8s: container %s has only known fields" % n, " ".join(sorted(bad)))
        sc = c.get("securityContext", {})
        bad = set(sc) - CSC_KEYS
        r.check(not bad and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                and "ALL" in sc.get("capabilities", {}).get("drop", []),
                "k8s: container %s: read-only root, no privilege escalation, all capabilities dropped" % n)
        res_ = c.get("resources", {})
        r.check(all(k in res_.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")),
                "k8s: container %s has cpu and memory requests and limits" % n)
        for m in c.get("volumeMounts", []):
            r.check(m["name"] in volumes, "k8s: container %s mounts declared volume %s" % (n, m["name"]))
    main = pod["containers"][0]
    r.check(len({c.get("image") for c in all_c}) == 1, "k8s: init and main containers use the same image")
    ports = {p.get("name"): p.get("containerPort") for p in main.get("ports", [])}
    r.check(port is not None and port in ports.values(),
            "k8s: container port %s is metrics_listen's port" % port)

    def probe(kind, path):
        p = main.get(kind) or {}
        bad = set(p) - PROBE_KEYS
        hg = p.get("httpGet", {})
        tgt = hg.get("port")
        return (not bad and hg.get("path") == path and (tgt == port or ports.get(tgt) == port))

    r.check(probe("livenessProbe", "/healthz"), "k8s: liveness probe GET /healthz on %s" % port)
    r.check(probe("readinessProbe", "/readyz"), "k8s: readiness probe GET /readyz on %s" % port)
    r.check("startupProbe" not in main or probe("startupProbe", "/healthz"), "k8s: startup probe (if any) GET /healthz")
    # The file `run -c` reads is the one the init container writes.
    args = main.get("args", [])
    r.check(args[:2] == ["run", "-c"] and len(args) == 3, "k8s: main container runs `rapport run -c FILE`")
    cfile = args[2] if len(args) == 3 else ""
    init = (pod.get("initContainers") or [{}])[0]
    script = " ".join(init.get("command", []))
    mounts = {m["name"]: m["mountPath"] for m in init.get("volumeMounts", [])}
    main_mounts = {m["mountPath"]: m for m in main.get("volumeMounts", [])}
    cm_vol = next((k for k, v in volumes.items() if "configMap" in v), None)
    sec_vol = next((k for k, v in volumes.items() if "secret" in v), None)
    r.check(("> " + cfile) in script and (mounts.get(cm_vol, "?") + "/rapport.conf") in script
            and (mounts.get(sec_vol, "?") + "/secret.conf") in script
            and script.index(mounts.get(cm_vol, "?")) < script.index(mounts.get(sec_vol, "?"))
            and os.path.dirname(cfile) in main_mounts,
            "k8s: init container writes %s from the ConfigMap, then the Secret" % cfile)
    r.check(volumes.get(sec_vol, {}).get("secret", {}).get("defaultMode") in (0o400, 0o440)
            and psc.get("fsGroup") == psc.get("runAsGroup"),
            "k8s: Secret files are 0440/0400 and readable through fsGroup")
    sel = svc["spec"].get("selector", {})
    r.check(sel and all(labels.get(k) == v for k, v in sel.items()), "k8s: Service selects the rapport pods")
    sp = svc["spec"].get("ports", [])
    r.check(any(p.get("port") == port and (p.get("targetPort") in (port,) or ports.get(p.get("targetPort")) == port)
                for p in sp), "k8s: Service exposes metrics on %s" % port)
    r.check(svc["spec"].get("publishNotReadyAddresses") is True, "k8s: Service lists pods that are not ready")
    for fn, pdb in by_kind.get("PodDisruptionBudget", []):
        s = pdb["spec"].get("selector", {}).get("matchLabels", {})
        r.check(s and all(labels.get(k) == v for k, v in s.items()), "k8s: PodDisruptionBudget selects the rapport pods")


# ------------------------------------------------------------------- main

def main(argv):
    if len(argv) >= 3 and argv[1] == "dockerfile":
        gargs, stages = dockerfile_parse(argv[2])
        for k, v in gargs.items():
            print("\tARG\t%s=%s" % (k, v))
        for st in stages:
            print("%s\tFROM\t%s" % (st["name"], expand(st["from"], gargs)))
            for i, a in st["instrs"]:
                print("%s\t%s\t%s" % (st["name"], i, a))
        return 0
    if len(argv) >= 3 and argv[1] == "static":
        deploy = argv[2]
        r = Report()
        uid = check_dockerfile(r, deploy)
        check_example_conf(r, deploy)
        check_compose(r, deploy)
        check_k8s(r, deploy, uid)
        print("deploycheck: %d failed" % r.failed)
        return 1 if r.failed else 0
    if len(argv) >= 4 and argv[1] == "extract":
        deploy, out = argv[2], argv[3]
        _, files = k8s_load(deploy)
        docs = [d for ds in files.values() for d in ds]
        cm = next(d for d in docs if d.get("kind") == "ConfigMap")
        sec = next(d for d in docs if d.get("kind") == "Secret")
        with open(os.path.join(out, "k8s.conf"), "w") as f:
            f.write(cm["data"]["rapport.conf"] + sec["stringData"]["secret.conf"])
        with open(os.path.join(deploy, "docker-compose.yml")) as f:
            compose = yaml.safe_load(f)
        with open(os.path.join(out, "gen.args"), "w") as f:
            f.write("\n".join(compose["services"]["gen"]["command"]) + "\n")
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
