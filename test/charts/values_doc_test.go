package charts

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// kubernetesFields are values passed to the pod spec as they are: their
// meaning is Kubernetes' own, so they need no comment of ours.
var kubernetesFields = map[string]bool{
	"resources": true, "nodeSelector": true, "tolerations": true, "affinity": true, "topologySpreadConstraints": true,
	"podSecurityContext": true, "securityContext": true, "imagePullSecrets": true, "pullPolicy": true,
	"podAnnotations": true, "podLabels": true, "priorityClassName": true, "runtimeClassName": true,
	"extraVolumes": true, "extraVolumeMounts": true, "extraEnv": true, "envFrom": true,
	"extraContainers": true, "extraInitContainers": true,
}

// Every value of both charts is documented in its values.yaml, as the
// README says: a value has a comment of its own, or belongs to a group
// whose comment describes it (sweeper.enabled under a commented sweeper),
// or is a Kubernetes field passed on as it is.
func TestEveryValueIsDocumented(t *testing.T) {
	for _, chart := range []string{"azdo-keda-scaler", "azdo-agent-pool"} {
		b, err := os.ReadFile("../../charts/" + chart + "/values.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		var undocumented []string
		leaves := 0
		var walk func(n *yaml.Node, path string, groupDocumented bool)
		walk = func(n *yaml.Node, path string, groupDocumented bool) {
			switch n.Kind {
			case yaml.DocumentNode:
				walk(n.Content[0], path, groupDocumented)
				return
			case yaml.SequenceNode:
				for _, c := range n.Content {
					walk(c, path+"[]", groupDocumented)
				}
				return
			case yaml.MappingNode:
			default:
				return
			}
			for i := 0; i < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if kubernetesFields[k.Value] {
					continue
				}
				p := strings.TrimPrefix(path+"."+k.Value, ".")
				own := k.HeadComment != "" || k.LineComment != "" || v.LineComment != ""
				if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
					walk(v, p, own)
					continue
				}
				if v.Kind == yaml.SequenceNode && len(v.Content) > 0 && v.Content[0].Kind == yaml.MappingNode {
					walk(v, p, own)
					continue
				}
				leaves++
				if !own && !groupDocumented {
					undocumented = append(undocumented, p)
				}
			}
		}
		walk(&doc, "", false)
		if leaves < 30 {
			t.Fatalf("%s: only %d values found", chart, leaves)
		}
		for _, p := range undocumented {
			t.Errorf("charts/%s/values.yaml: %s has no comment (nor has its group)", chart, p)
		}
	}
}
