// ollama-render: renders Ollama TEMPLATEs with Go's own text/template, fed
// the data Ollama's chat endpoint feeds them (ollama's template/template.go,
// Template.Execute, the .Messages path): .System (every system message,
// joined by a blank line), .Messages (consecutive messages of one role
// merged, tool messages kept apart) with .Role .Content .Thinking .Images
// .ToolCalls .ToolName .ToolCallID, .Tools, .Response (empty), .Think,
// .ThinkLevel, .IsThinkSet; the template functions json, currentDate,
// yesterdayDate and toTypeScriptType; and the option missingkey=zero.
//
// Templates that never name .Messages get Ollama's older per-turn .Prompt/
// .Response rendering, which smelt does not write: they are reported as an
// error here, so a family template that slips into that mode fails.
//
// Reads a JSON list of jobs on standard input, writes a JSON list of
// results. Standard library only (Debian's golang-go), built offline by
// tests/chat-template/meson.build.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

type toolCallFunction struct {
	Index     int
	Name      string
	Arguments arguments
}

// arguments prints as JSON, as Ollama's templateArgs does
type arguments map[string]any

func (a arguments) String() string {
	if a == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]any(a))
	return string(b)
}

type toolCall struct {
	ID       string
	Function toolCallFunction
}

type message struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []toolCall
	ToolName   string
	ToolCallID string
}

type property struct {
	Type        string `json:"type"`
	Description string `json:"description"`
}

type toolParameters struct {
	Type       string              `json:"type"`
	Required   []string            `json:"required,omitempty"`
	Properties map[string]property `json:"properties"`
}

type toolFunction struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Parameters  toolParameters `json:"parameters"`
}

type tool struct {
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type tools []tool

func (t tools) String() string {
	b, _ := json.Marshal([]tool(t))
	return string(b)
}

type jobMessage struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	ToolCalls []struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"tool_calls"`
}

type job struct {
	Name       string       `json:"name"`
	Template   string       `json:"template"`
	Messages   []jobMessage `json:"messages"`
	Tools      tools        `json:"tools"`
	Think      bool         `json:"think"`
	IsThinkSet bool         `json:"is_think_set"`
}

type result struct {
	Name   string `json:"name"`
	Output string `json:"output"`
	Error  string `json:"error,omitempty"`
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"currentDate": func(args ...string) string {
		return time.Now().Format("2006-01-02")
	},
	"yesterdayDate": func(args ...string) string {
		return time.Now().AddDate(0, 0, -1).Format("2006-01-02")
	},
	"toTypeScriptType": func(v any) string {
		return "any"
	},
}

// names collects the field and variable names a template mentions, as
// Ollama's Identifiers does to pick the rendering mode.
func names(n parse.Node, out map[string]bool) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				names(c, out)
			}
		}
	case *parse.ActionNode:
		names(n.Pipe, out)
	case *parse.TemplateNode:
		if n.Pipe != nil {
			names(n.Pipe, out)
		}
	case *parse.IfNode:
		names(&n.BranchNode, out)
	case *parse.RangeNode:
		names(&n.BranchNode, out)
	case *parse.WithNode:
		names(&n.BranchNode, out)
	case *parse.BranchNode:
		names(n.Pipe, out)
		names(n.List, out)
		if n.ElseList != nil {
			names(n.ElseList, out)
		}
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				names(a, out)
			}
		}
	case *parse.FieldNode:
		for _, s := range n.Ident {
			out[strings.ToLower(s)] = true
		}
	case *parse.VariableNode:
		for _, s := range n.Ident {
			out[strings.ToLower(s)] = true
		}
	}
}

// collate: the system messages joined, and consecutive messages of one
// role (but tool) merged with a blank line, as Ollama's collate does.
func collate(msgs []jobMessage) (string, []*message) {
	var system []string
	var out []*message
	for _, m := range msgs {
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == m.Role && m.Role != "tool" {
			out[len(out)-1].Content += "\n\n" + m.Content
			continue
		}
		tm := &message{Role: m.Role, Content: m.Content}
		for i, tc := range m.ToolCalls {
			tm.ToolCalls = append(tm.ToolCalls, toolCall{
				Function: toolCallFunction{Index: i, Name: tc.Name, Arguments: arguments(tc.Arguments)},
			})
		}
		out = append(out, tm)
	}
	return strings.Join(system, "\n\n"), out
}

func render(j job) (string, error) {
	t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(j.Template)
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for _, tt := range t.Templates() {
		names(tt.Root, seen)
	}
	if !seen["messages"] {
		return "", fmt.Errorf("the template never names .Messages: Ollama would render it turn by turn with .Prompt/.Response")
	}
	system, msgs := collate(j.Messages)
	var b strings.Builder
	err = t.Execute(&b, map[string]any{
		"System":     system,
		"Messages":   msgs,
		"Tools":      j.Tools,
		"Response":   "",
		"Think":      j.Think,
		"ThinkLevel": "",
		"IsThinkSet": j.IsThinkSet,
	})
	return b.String(), err
}

func main() {
	var jobs []job
	if err := json.NewDecoder(os.Stdin).Decode(&jobs); err != nil {
		fmt.Fprintln(os.Stderr, "ollama-render: bad input:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(jobs))
	for _, j := range jobs {
		out, err := render(j)
		r := result{Name: j.Name, Output: out}
		if err != nil {
			r.Error = err.Error()
		}
		results = append(results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "ollama-render:", err)
		os.Exit(2)
	}
}
