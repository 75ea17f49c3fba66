package catalog

// english is the reference catalogue. Line breaks inside an entry are the
// ones the mail and the page show in their source: keep lines of the
// page's entries under 70 characters, so SecureMessageATT.html keeps its
// 78-character lines.
var english = map[string]string{
	// SecureMessageATT.html
	"page.title":        "Secure message",
	"page.title_from":   "Secure message from {Org}",
	"page.logo_alt":     "Sender's logo",
	"page.logo_alt_org": "{Org} logo",
	"page.heading":      "You have received a secure message",
	"page.heading_from": "You have received a secure message from {Org}",
	"page.from":         "From:",
	"page.sent":         "Sent: {Date}",
	"page.explain":      "The message is encrypted. To read it, click the button below. Your\nbrowser opens the secure reading site of the sender's mail service, where you\nsign in or create an account with this email address.",
	"page.button":       "Click to read message",
	"page.check":        "**How to check that this is genuine.** After you click, the\naddress bar of your browser must start with\n`{PortalURL}/`\n(the site `{PortalHost}`).\nIf it shows any other address, close the page and do not type your\npassword.",
	"page.keep":         "This file never asks for your password. Keep it: it is the only copy of the\nencrypted message, and it can be read only on that site, only by the people it\nwas sent to, and only until the sender's service deletes its key.",

	// The notice's HTML part.
	"notice.org":        "Secure message from **{Org}**",
	"notice.sent_you":   "**{From}** sent you a secure message.",
	"notice.two_ways":   "There are two ways to read it.",
	"notice.computer":   "**On a computer:** open the attachment\n**SecureMessageATT.html** and click\n**Click to read message**.",
	"notice.phone_link": "**On a phone or tablet, or if the attachment does not open:**\nfollow this link to the same reading site:",
	"notice.link_until": "The link works until {LinkUntil}; the attachment works for as long as the\nmessage can be read.",
	"notice.either_way": "Either way, you sign in, or create an account with this email address, at\n**{PortalURL}**.",
	"notice.open":       "To read it, open the attachment **SecureMessageATT.html** and\nclick **Click to read message**. You will sign in, or create an\naccount with this email address, at **{PortalURL}**.",
	"notice.phone":      "On a phone or tablet: if the attachment does not open, open this email on\na computer, or save the attachment to your files and open it in your\nbrowser.",
	"notice.genuine":    "To check that the message is genuine, make sure the reading site's address\nstarts with {PortalURL}/ before you type your password.",

	// The notice's text part.
	"text.org": "Secure message from {Org}",
	"text.notice": `{From} sent you a secure message.

To read it, open the attachment SecureMessageATT.html and click
"Click to read message". You will sign in, or create an account with
this email address, at {PortalURL}

On a phone or tablet: if the attachment does not open, open this email
on a computer, or save the attachment to your files and open it in
your browser.

To check that the message is genuine, make sure the reading site's
address starts with {PortalURL}/ before you type your password.
`,
	"text.notice_link": `{From} sent you a secure message. There are two ways to read it.

On a computer: open the attachment SecureMessageATT.html and click
"Click to read message".

On a phone or tablet, or if the attachment does not open: follow this
link to the same reading site:
{Link}
The link works until {LinkUntil}; the attachment works for as long as the
message can be read.

Either way, you sign in, or create an account with this email address,
at {PortalURL}

To check that the message is genuine, make sure the reading site's
address starts with {PortalURL}/ before you type your password.
`,
}
