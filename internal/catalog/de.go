package catalog

// german is the German catalogue, in the formal "Sie". The page's lines
// are shorter than English ones: in the 7-bit page every umlaut becomes a
// six-character reference.
var german = map[string]string{
	// SecureMessageATT.html
	"page.title":        "Sichere Nachricht",
	"page.title_from":   "Sichere Nachricht von {Org}",
	"page.logo_alt":     "Logo des Absenders",
	"page.logo_alt_org": "Logo von {Org}",
	"page.heading":      "Sie haben eine sichere Nachricht erhalten",
	"page.heading_from": "Sie haben eine sichere Nachricht von {Org} erhalten",
	"page.from":         "Von:",
	"page.sent":         "Gesendet: {Date}",
	"page.explain":      "Die Nachricht ist verschlüsselt. Klicken Sie zum Lesen\nauf die Schaltfläche unten. Ihr Browser öffnet die sichere\nLeseseite des E-Mail-Dienstes des Absenders. Dort melden Sie\nsich an oder legen mit dieser E-Mail-Adresse ein Konto an.",
	"page.button":       "Nachricht lesen",
	"page.check":        "**So prüfen Sie, ob die Seite echt ist.** Nach dem Klick\nmuss die Adresszeile Ihres Browsers mit\n`{PortalURL}/`\nbeginnen (die Seite `{PortalHost}`).\nZeigt sie eine andere Adresse, schließen Sie die Seite und\ngeben Sie Ihr Passwort nicht ein.",
	"page.keep":         "Diese Datei fragt nie nach Ihrem Passwort. Bewahren Sie sie\nauf: Sie ist die einzige Kopie der verschlüsselten Nachricht.\nLesen kann sie nur, an wen sie gesendet wurde, nur auf jener\nSeite und nur, bis der Dienst des Absenders ihren Schlüssel\nlöscht.",

	// The notice's HTML part.
	"notice.org":        "Sichere Nachricht von **{Org}**",
	"notice.sent_you":   "**{From}** hat Ihnen eine sichere Nachricht gesendet.",
	"notice.two_ways":   "Sie können sie auf zwei Wegen lesen.",
	"notice.computer":   "**Am Computer:** Öffnen Sie den Anhang\n**SecureMessageATT.html** und klicken Sie auf\n**Nachricht lesen**.",
	"notice.phone_link": "**Auf dem Smartphone oder Tablet, oder wenn sich der Anhang nicht öffnet:**\nFolgen Sie diesem Link zur selben Leseseite:",
	"notice.link_until": "Der Link gilt bis {LinkUntil}; der Anhang gilt, solange die\nNachricht gelesen werden kann.",
	"notice.either_way": "In beiden Fällen melden Sie sich auf **{PortalURL}** an\noder legen dort mit dieser E-Mail-Adresse ein Konto an.",
	"notice.open":       "Öffnen Sie zum Lesen den Anhang **SecureMessageATT.html** und\nklicken Sie auf **Nachricht lesen**. Sie melden sich dann auf\n**{PortalURL}** an oder legen dort mit dieser E-Mail-Adresse ein Konto an.",
	"notice.phone":      "Auf dem Smartphone oder Tablet: Wenn sich der Anhang nicht öffnet,\nöffnen Sie diese E-Mail am Computer, oder speichern Sie den Anhang in\nIhren Dateien und öffnen Sie ihn in Ihrem Browser.",
	"notice.genuine":    "Prüfen Sie, ob die Nachricht echt ist: Die Adresse der Leseseite muss\nmit {PortalURL}/ beginnen, bevor Sie Ihr Passwort eingeben.",

	// The notice's text part.
	"text.org": "Sichere Nachricht von {Org}",
	"text.notice": `{From} hat Ihnen eine sichere Nachricht gesendet.

Öffnen Sie zum Lesen den Anhang SecureMessageATT.html und klicken Sie
auf "Nachricht lesen". Sie melden sich dann auf
{PortalURL}
an oder legen dort mit dieser E-Mail-Adresse ein Konto an.

Auf dem Smartphone oder Tablet: Wenn sich der Anhang nicht öffnet,
öffnen Sie diese E-Mail am Computer, oder speichern Sie den Anhang in
Ihren Dateien und öffnen Sie ihn in Ihrem Browser.

Prüfen Sie, ob die Nachricht echt ist: Die Adresse der Leseseite muss
mit {PortalURL}/ beginnen, bevor Sie Ihr Passwort eingeben.
`,
	"text.notice_link": `{From} hat Ihnen eine sichere Nachricht gesendet. Sie können sie auf
zwei Wegen lesen.

Am Computer: Öffnen Sie den Anhang SecureMessageATT.html und klicken
Sie auf "Nachricht lesen".

Auf dem Smartphone oder Tablet, oder wenn sich der Anhang nicht
öffnet: Folgen Sie diesem Link zur selben Leseseite:
{Link}
Der Link gilt bis {LinkUntil}; der Anhang gilt, solange die Nachricht
gelesen werden kann.

In beiden Fällen melden Sie sich auf
{PortalURL}
an oder legen dort mit dieser E-Mail-Adresse ein Konto an.

Prüfen Sie, ob die Nachricht echt ist: Die Adresse der Leseseite muss
mit {PortalURL}/ beginnen, bevor Sie Ihr Passwort eingeben.
`,
}
