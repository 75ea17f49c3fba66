package portal

import (
	"bytes"
	"html/template"
	"net/http"
	"regexp"

	"github.com/securemail/securemail/internal/catalog"
)

// view is what every page template gets; each page uses the fields it
// needs.
type view struct {
	Title      string
	Paragraphs []string
	Error      string // shown in a box above the form
	Notice     string // a confirmation, shown in a box
	Email      string
	SignedIn   bool
	Token      string

	MinPassword, MaxPassword int
	Questions                []string      // the fixed list, for choosing
	Asked                    []askedAnswer // the account's questions, for answering
	AnswerTries              int           // sets of answers a reset allows
	Code                     codeView
	Remember                 bool // the email page's "remember" box is ticked
	// Form keeps what the user typed into a form that was refused (never
	// a password), by field name; Field names the field to fix.
	Form  map[string]string
	Field string

	Msg         *Message
	When        string   // Msg's date in words, in Zone; "" when it has none that parses
	Zone        zoneView // the zone When is written in, and the form to change it
	ReplyAll    bool
	Attachments []attachmentLink
	Sent        *sentReply
	Org         string // who a reply leaves: the domain of the message's sender
	// Back, when set, is the message page a "Back to the message" link
	// under the page's content leads to.
	Back string

	Brand brandView // set by render from Token (brand.go)
	// Lang is the page's language and Langs the switch to the others; set
	// by render from the request unless a handler set Lang.
	Lang  catalog.Lang
	Langs []langLink
}

// codeView is the sign-in page's code part: with Form, the words above
// the code field (a code was sent, or the budget was spent); without,
// a button that mails a code.
type codeView struct {
	Form  bool
	Words string
}

type askedAnswer struct {
	Index    int
	Question string
}

type attachmentLink struct {
	URL, Name, Type, Size string
}

type sentReply struct {
	To          []string
	Subject     string
	Attachments []string
}

const layout = `<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}{{if .Brand.Org}} · {{.Brand.Org}}{{else if ne .Title (print (t "portal.service"))}} · {{t "portal.service"}}{{end}}</title>
<link rel="stylesheet" href="/static/portal.css">
{{with .Brand.ID}}<link rel="stylesheet" href="/static/brand/{{.}}/style.css">
{{end}}</head><body>
<header class="bar{{if .SignedIn}} in{{end}}">{{if .Brand.ID}}<span class="brand">{{if .Brand.Logo}}<img src="/static/brand/{{.Brand.ID}}/logo" alt="{{if .Brand.Org}}{{t "page.logo_alt_org" "Org" .Brand.Org}}{{else}}{{t "page.logo_alt"}}{{end}}">{{end}}<span class="name">{{if .Brand.Org}}{{.Brand.Org}} · {{end}}{{t "portal.service"}}</span></span>{{else}}<span class="brand"><span class="name">{{t "portal.service"}}</span></span>{{end}}{{if .SignedIn}}<span class="who"><span class="vh">{{t "portal.signed_in_as"}} </span>{{.Email}}</span> <a href="/account/password">{{t "portal.change_password"}}</a> <form method="post" action="/signout"><button class="link" type="submit">{{t "portal.sign_out"}}</button></form>{{end}}</header>
<main>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error" role="alert" id="form-error">{{.Error}}</p>{{end}}
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
{{range .Paragraphs}}<p>{{.}}</p>{{end}}
{{template "content" .}}
{{with .Back}}<p class="back"><a href="{{.}}">{{t "portal.back"}}</a></p>{{end}}
{{with .Brand.Support}}<p class="support">{{.}}</p>{{end}}
</main>
<footer class="langs" aria-label="{{t "portal.languages"}}">{{range .Langs}}<a href="{{.URL}}" lang="{{.Lang}}" hreflang="{{.Lang}}">{{.Name}}</a>{{end}}</footer>
</body></html>
`

var pageSources = map[string]string{
	"plain": ``,

	"email": `<form method="post" action="/email">
<input type="hidden" name="token" value="{{.Token}}">
<label for="email">{{t "portal.email.label"}}</label>
<input id="email" name="email" type="email" autocomplete="email" required value="{{.Email}}"{{invalid $ "email"}}>
<p class="hint">{{t "portal.email.hint"}}</p>
<label class="check"><input type="checkbox" name="remember" value="1"{{if .Remember}} checked{{end}}> {{t "portal.email.remember"}}</label>
<p class="hint">{{t "portal.email.remember_hint"}}</p>
<button type="submit">{{t "portal.continue"}}</button>
</form>`,

	"signin": `<p>{{t "portal.signin.as" "Email" .Email}} <a class="tap" href="/m/{{.Token}}?change=1">{{t "portal.signin.not_you"}}</a></p>
<h2>{{t "portal.signin.have_password"}}</h2>
<form method="post" action="/signin">
<input type="hidden" name="token" value="{{.Token}}">
<label for="password">{{t "portal.signin.password"}}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">{{t "portal.signin.button"}}</button>
</form>
<section class="choices">
<h2>{{t "portal.signin.first_time"}}</h2>
{{if .Code.Form}}<p>{{.Code.Words}}</p>
<form method="post" action="/code">
<label for="code">{{t "portal.code.label"}}</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*" maxlength="12" required{{invalid $ "code"}}>
<p class="hint">{{t "portal.code.hint" "Tries" codeTries}}</p>
<button type="submit">{{t "portal.code.check"}}</button>
</form>
<form method="post" action="/email" class="after">{{template "again" .}}<button class="secondary" type="submit">{{t "portal.code.send_new"}}</button></form>
{{else}}<p>{{t "portal.code.explain"}}</p>
<form method="post" action="/email">{{template "again" .}}<button class="secondary" type="submit">{{t "portal.code.email_me"}}</button></form>
{{end}}</section>`,

	"register": `<div class="rules"><p><strong>{{t "portal.register.choose"}}</strong></p><ul>
<li>{{t "portal.register.rule_length" "Min" .MinPassword "Max" .MaxPassword}}</li>
<li>{{t "portal.register.rule_list"}}</li>
</ul></div>
<form method="post" action="/register/password">
<label for="password">{{t "portal.password.new"}}</label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="{{.MinPassword}}" maxlength="{{.MaxPassword}}" required{{invalid $ "password"}}>
<label for="confirm">{{t "portal.password.again"}}</label>
<input id="confirm" name="confirm" type="password" autocomplete="new-password" required{{invalid $ "confirm"}}>
<fieldset><legend>{{t "portal.register.questions"}}</legend>
<p class="hint">{{t "portal.register.questions_hint"}}</p>
{{range $i, $n := slots}}{{$q := printf "q%d" $n}}{{$a := printf "a%d" $n}}
<label for="{{$q}}">{{t "portal.register.question_n" "N" $n}}</label>
<select id="{{$q}}" name="{{$q}}" required{{invalid $ $q}}><option value="">{{t "portal.register.choose_question"}}</option>{{range $qi, $text := $.Questions}}<option value="{{$qi}}"{{if eq (index $.Form $q) (print $qi)}} selected{{end}}>{{$text}}</option>{{end}}</select>
<label for="{{$a}}">{{t "portal.register.answer_n" "N" $n}}</label>
<input id="{{$a}}" name="{{$a}}" autocomplete="off" required value="{{index $.Form $a}}"{{invalid $ $a}}>
{{end}}
</fieldset>
<button type="submit">{{t "portal.register.create"}}</button>
</form>`,

	"answers": `<div class="rules"><ul>
<li>{{t "portal.answers.chosen"}}</li>
<li>{{t "portal.answers.case"}}</li>
<li>{{t "portal.answers.tries" "Tries" .AnswerTries}}</li>
<li>{{t "portal.answers.forgot"}}</li>
</ul></div>
<form method="post" action="/reset/answers">
{{range .Asked}}<label for="a{{.Index}}">{{.Question}}</label>
<input id="a{{.Index}}" name="a{{.Index}}" autocomplete="off" required>
{{end}}<button type="submit">{{t "portal.continue"}}</button>
</form>`,

	"newpassword": `<div class="rules"><p>{{t "portal.newpassword.rules" "Min" .MinPassword "Max" .MaxPassword}}</p></div>
<form method="post" action="{{if .SignedIn}}/account/password{{else}}/reset/password{{end}}">
{{if .SignedIn}}<label for="current">{{t "portal.password.current"}}</label>
<input id="current" name="current" type="password" autocomplete="current-password" required>
{{end}}<label for="password">{{t "portal.password.new"}}</label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="{{.MinPassword}}" maxlength="{{.MaxPassword}}" required{{invalid $ "password"}}>
<label for="confirm">{{t "portal.password.again"}}</label>
<input id="confirm" name="confirm" type="password" autocomplete="new-password" required{{invalid $ "confirm"}}>
<button type="submit">{{t "portal.newpassword.save"}}</button>
</form>`,
}

// pages holds every page in every language: the same sources, with "t"
// rendering the language's catalogue entries (catalog.HTML).
var pages = func() map[catalog.Lang]map[string]*template.Template {
	all := make(map[catalog.Lang]map[string]*template.Template, len(catalog.Languages))
	for _, l := range catalog.Languages {
		all[l] = pagesIn(l)
	}
	return all
}()

func pagesIn(l catalog.Lang) map[string]*template.Template {
	base := template.Must(template.New("layout").Funcs(template.FuncMap{
		"t": func(key string, nameValues ...any) template.HTML { return catalog.HTML(l, key, nameValues...) },
		"slots": func() []int {
			n := make([]int, registerQuestions)
			for i := range n {
				n[i] = i + 1
			}
			return n
		},
		"codeTries": func() int { return codeTries },
		// invalid marks the field a refused form must fix and ties it to
		// the error above the form, for screen readers.
		"invalid": func(v view, field string) template.HTMLAttr {
			if v.Field != field {
				return ""
			}
			return ` aria-invalid="true" aria-describedby="form-error" autofocus`
		},
	}).Parse(inlineEntries(l, layout)))
	// again is the hidden part of the sign-in page's forms that mail a
	// code: they post the address again to /email.
	template.Must(base.New("again").Parse(`<input type="hidden" name="token" value="{{.Token}}"><input type="hidden" name="email" value="{{.Email}}"><input type="hidden" name="again" value="1">`))
	m := make(map[string]*template.Template, len(pageSources)+len(readPageSources))
	for _, sources := range []map[string]string{pageSources, readPageSources} {
		for name, src := range sources {
			m[name] = template.Must(template.Must(base.Clone()).New("content").Parse(inlineEntries(l, src)))
		}
	}
	return m
}

// fixedEntry is a {{t "key"}} without values in a page's source.
var fixedEntry = regexp.MustCompile(`\{\{t "([a-z0-9_.]+)"\}\}`)

// inlineEntries puts the source of every entry a page names without
// values into the page's source, so rendering does not call t for words
// that never change (a reflected call is most of a page's render time).
func inlineEntries(l catalog.Lang, src string) string {
	return fixedEntry.ReplaceAllStringFunc(src, func(m string) string {
		return catalog.Source(l, fixedEntry.FindStringSubmatch(m)[1])
	})
}

// render writes a page. Pages are rendered into a buffer first, so a
// template error becomes a plain 500 page instead of half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	v.Brand = h.pageBrand(v)
	if v.Lang == "" {
		v.Lang = h.lang(r)
	}
	v.Langs = langSwitch(r, v.Lang, v.Token)
	var buf bytes.Buffer
	if err := pages[v.Lang][name].ExecuteTemplate(&buf, "layout", v); err != nil {
		h.log.Error("portal: page template failed", "page", name, "err", err)
		ie := pageInternal(err)
		status = ie.status
		buf.Reset()
		title, words := ie.page(v.Lang)
		pages[v.Lang]["plain"].ExecuteTemplate(&buf, "layout", view{Title: title, Paragraphs: words, Lang: v.Lang, Langs: v.Langs})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Language", string(v.Lang))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (h *handler) home(w http.ResponseWriter, r *http.Request) {
	l := h.lang(r)
	h.render(w, r, http.StatusOK, "plain", view{
		Title: catalog.Text(l, "portal.service"),
		Paragraphs: []string{
			catalog.Text(l, "portal.home.about"),
			catalog.Text(l, "portal.home.how"),
			catalog.Text(l, "portal.home.genuine", "PortalURL", h.opts.PortalURL),
		},
	})
}

func serveCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write([]byte(portalCSS))
}

const portalCSS = `*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8;line-height:1.5;font-size:16px}
.bar{display:flex;gap:.75rem;align-items:center;padding:.25rem 1rem;background:#1d3557;color:#fff;white-space:nowrap}
.bar a,.bar .link{color:#fff}
.bar a,.bar button.link{display:inline-flex;align-items:center;padding:0 .3rem;min-height:44px}
.bar a,.bar form{flex:none}
.brand{display:flex;align-items:center;gap:.6rem;font-weight:600;min-width:0;min-height:44px;margin-right:auto}
.brand .name,.who{overflow:hidden;text-overflow:ellipsis;min-width:0}
.who{flex-shrink:100}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
main{max-width:46rem;margin:1.5rem auto;padding:1.25rem;background:#fff;border-radius:8px;overflow-wrap:anywhere}
h1{font-size:1.5rem;margin-top:0}
h2{font-size:1.15rem;margin-top:2rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
label.check{font-weight:normal;display:flex;gap:.6rem;align-items:center;min-height:44px}
input,select,textarea{width:100%;font:inherit;padding:.6rem;border:1px solid #8a93a3;border-radius:6px;background:#fff}
input[type=checkbox]{width:1.25rem;height:1.25rem;margin:0;flex:none}
button{font:inherit;margin-top:1rem;min-height:44px;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#1d3557;color:#fff;cursor:pointer}
button.secondary{background:#e7ebf1;color:#1d3557}
button.link{background:none;border:0;margin:0;padding:0 .25rem;min-height:0;text-decoration:underline;cursor:pointer}
.choices{border-top:1px solid #dde1e7;margin-top:1.5rem}
a.tap{display:inline-block;padding:.6rem 0;min-height:44px}
.after{margin-top:.5rem}
.hint{color:#4a5262;font-size:.9rem}
.error{background:#fde8e8;border:1px solid #c53030;padding:.75rem;border-radius:6px}
.notice{background:#e6f4ea;border:1px solid #2f855a;padding:.75rem;border-radius:6px}
.rules{background:#f0f4fa;padding:.25rem .75rem;border-radius:6px}
.back a{display:inline-block;padding:.6rem 0;min-height:44px}
fieldset{border:1px solid #dde1e7;border-radius:6px;margin-top:1.25rem}
dl.headers{display:grid;grid-template-columns:max-content 1fr;gap:.25rem .75rem;margin:0 0 1rem}
dl.headers dt{font-weight:600}
dl.headers dd{margin:0;min-width:0}
pre.text-body{white-space:pre-wrap;overflow-wrap:anywhere;font-family:inherit;background:#fafbfc;padding:.75rem;border-radius:6px}
.html-body{border:1px solid #dde1e7;padding:.75rem;border-radius:6px;overflow-x:auto}
.html-body img{max-width:100%;height:auto}
details.tz{margin:0 0 1rem}
details.tz summary{cursor:pointer;padding:.6rem 0;min-height:44px;color:#1d3557;text-decoration:underline}
ul.attachments{padding-left:1.2rem}
ul.attachments a{overflow-wrap:anywhere;display:inline-block;padding:.6rem 0;min-height:44px}
footer.langs{max-width:46rem;margin:0 auto 1.5rem;padding:0 1.25rem;display:flex;gap:1rem}
footer.langs a{display:inline-block;padding:.6rem 0;min-height:44px}
@media (max-width:480px){.bar{font-size:.875rem;gap:.25rem;padding:.25rem .5rem}.bar a,.bar button.link{font-size:.8125rem;padding:0 .25rem}.bar .who,.bar.in .brand .name{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}main{margin:0;border-radius:0;padding:1rem}dl.headers{grid-template-columns:1fr}dl.headers dt{margin-top:.4rem}}
`
