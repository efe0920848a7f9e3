package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
		Host string `yaml:"host"`
	} `yaml:"httpGet"`
}

type k8sDaemonSet struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Template struct {
			Spec struct {
				HostNetwork                  bool  `yaml:"hostNetwork"`
				AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
				Containers                   []struct {
					Image string   `yaml:"image"`
					Args  []string `yaml:"args"`
					Env   []struct {
						Name      string `yaml:"name"`
						ValueFrom struct {
							FieldRef struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					SecurityContext struct {
						ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
						Capabilities           struct {
							Drop []string `yaml:"drop"`
							Add  []string `yaml:"add"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
					LivenessProbe  k8sProbe `yaml:"livenessProbe"`
					ReadinessProbe k8sProbe `yaml:"readinessProbe"`
					VolumeMounts   []struct {
						Name     string `yaml:"name"`
						ReadOnly bool   `yaml:"readOnly"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestDaemonSet: liveness does not depend on charon (/livez), readiness does
// (/readyz); metrics bind the node's IP, never every address of the host
// network; no service-account token; host paths read-only except the
// control socket's emptyDir; the image has a build recipe.
func TestDaemonSet(t *testing.T) {
	data, err := os.ReadFile("kubernetes/mobiked-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var ds *k8sDaemonSet
	for {
		var doc k8sDaemonSet
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if doc.Kind == "DaemonSet" {
			ds = &doc
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("hostNetwork must be true")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: mobiked uses no Kubernetes API")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.LivenessProbe.HTTPGet.Path != "/livez" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes %q/%q, want /livez (independent of charon) and /readyz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	if !slices.Contains(c.Args, "--metrics-listen=$(NODE_IP):9816") {
		t.Errorf("args %v: metrics must listen on the node IP", c.Args)
	}
	nodeIP := false
	for _, e := range c.Env {
		nodeIP = nodeIP || (e.Name == "NODE_IP" && e.ValueFrom.FieldRef.FieldPath == "status.hostIP")
	}
	if !nodeIP {
		t.Error("NODE_IP must come from status.hostIP")
	}
	if strings.Contains(string(data), "0.0.0.0") {
		t.Error("the DaemonSet mentions 0.0.0.0: on the host network that is every uplink")
	}
	if !c.SecurityContext.ReadOnlyRootFilesystem || !slices.Equal(c.SecurityContext.Capabilities.Drop, []string{"ALL"}) ||
		!slices.Equal(c.SecurityContext.Capabilities.Add, []string{"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"}) {
		t.Errorf("securityContext %+v", c.SecurityContext)
	}
	for _, m := range c.VolumeMounts {
		if m.Name != "run" && !m.ReadOnly {
			t.Errorf("volume %s mounted read-write", m.Name)
		}
	}
	if _, err := os.Stat("kubernetes/Containerfile"); err != nil {
		t.Errorf("the image %s has no build recipe: %v", c.Image, err)
	}
}
