package catalog

func init() {
	add(German, map[string]string{
		"error.open_again.title":      "Bitte öffnen Sie Ihre Nachricht erneut",
		"error.busy.title":            "Der Server ist ausgelastet",
		"error.too_many_opened.title": "Zu viele Nachrichten geöffnet",
		"error.expired.title":         "Diese sichere Nachricht ist abgelaufen",
		"error.revoked.title":         "Der Absender hat diese sichere Nachricht zurückgezogen",

		"error.form_unreadable.title": "Das Formular konnte nicht gelesen werden",
		"error.form_unreadable.text":  "Das Formular war zu groß oder wurde unterwegs beschädigt. Gehen Sie zurück und versuchen Sie es noch einmal.",

		"error.start_over.text":    "Ihr Besuch ist abgelaufen, oder diese Seite wurde außer der Reihe aufgerufen. Öffnen Sie den Anhang SecureMessageATT.html in Ihrer E-Mail erneut und wählen Sie „Nachricht lesen“.",
		"error.start_over.cookies": "Diese Website braucht ein Cookie, um sich die einzelnen Schritte zu merken. Falls Ihr Browser Cookies blockiert, erlauben Sie sie für diese Website und versuchen Sie es noch einmal.",

		"error.account_exists.title": "Sie haben bereits ein Konto",
		"error.account_exists.text":  "Für {Email} gibt es bereits ein Konto. Öffnen Sie die Nachricht erneut und melden Sie sich mit Ihrem Passwort an.",

		"error.too_many_answers.title": "Zu viele falsche Antworten",
		"error.too_many_answers.text":  "Die Sicherheitsfragen wurden zu oft falsch beantwortet, daher wurde das Zurücksetzen abgebrochen. Öffnen Sie Ihre Nachricht erneut und fordern Sie einen neuen Code an, um von vorn zu beginnen.",

		"error.busy.text": "Gerade nutzen sehr viele Menschen diese Website. Es ist nichts verloren gegangen. Bitte versuchen Sie es in einer Minute noch einmal.",

		"error.too_many_uploads.title": "Zu viele gleichzeitige Uploads",
		"error.too_many_uploads.text":  "Ihr Browser sendet bereits mehrere Nachrichten an diesen Server. Warten Sie, bis diese fertig sind, und versuchen Sie es dann noch einmal.",

		"error.upload_too_slow.title": "Der Upload war zu langsam",
		"error.upload_too_slow.text":  "Ihr Browser hat die Nachricht zu langsam gesendet, daher hat der Server nicht länger gewartet. Prüfen Sie Ihre Verbindung und versuchen Sie es noch einmal.",

		"error.spool_full.text": "Gerade werden sehr viele Nachrichten gelesen, daher kann der Server Ihre im Moment nicht annehmen. Es ist nichts verloren gegangen. Bitte öffnen Sie den Anhang in einigen Minuten erneut.",

		"error.too_many_opened.text": "Ihr Browser hat diesem Server in kurzer Zeit sehr viele Nachrichten gesendet. Bitte warten Sie {Wait} und öffnen Sie den Anhang dann erneut.",
		"error.too_many_links.text":  "Ihr Browser hat auf diesem Server in kurzer Zeit sehr viele Nachrichten geöffnet. Bitte warten Sie {Wait} und öffnen Sie den Link dann erneut.",

		"error.unknown_link.title":      "Dieser Link funktioniert nicht",
		"error.unknown_link.text":       "Unter diesem Link ist hier keine Nachricht bekannt. Prüfen Sie, ob Sie den vollständigen Link aus der E-Mail geöffnet haben; manche Apps kürzen lange Links.",
		"error.unknown_link.attachment": "Sie können die Nachricht auch über den Anhang der E-Mail lesen: Öffnen Sie SecureMessageATT.html und wählen Sie „Nachricht lesen“.",

		"error.link_ended.title":         "Dieser Link ist nicht mehr gültig",
		"error.link_ended.kept_until":    "Der Link öffnete eine Kopie Ihrer Nachricht, die diese Website bis {Until} zum Lesen auf dem Smartphone bereithielt. Diese Kopie wurde gelöscht.",
		"error.link_ended.kept_for_time": "Der Link öffnete eine Kopie Ihrer Nachricht, die diese Website für begrenzte Zeit zum Lesen auf dem Smartphone bereithielt. Diese Kopie wurde gelöscht.",
		"error.link_ended.attachment":    "Ihre Nachricht lässt sich weiterhin lesen: Öffnen Sie den Anhang SecureMessageATT.html in der E-Mail, notfalls auf einem Computer, und wählen Sie „Nachricht lesen“.",

		"error.link_revoked.text": "Diese Nachricht lässt sich nicht mehr öffnen, weil sie zurückgezogen wurde. Die Kopie, die dieser Link öffnete, wurde von dieser Website gelöscht, und auch der Anhang in der E-Mail lässt sich nicht mehr öffnen.",
		"error.link_revoked.ask":  "Wenn Sie die Nachricht noch brauchen, wenden Sie sich bitte an den Absender.",

		"error.link_expired.text": "Sichere Nachrichten sind nur für begrenzte Zeit lesbar, und diese lässt sich nicht mehr öffnen. Die Kopie, die dieser Link öffnete, wurde von dieser Website gelöscht; niemand kann die Nachricht jetzt noch lesen, weder hier noch anderswo.",
		"error.expired.ask":       "Wenn Sie sie noch brauchen, bitten Sie den Absender, sie erneut zu senden.",

		"error.message_too_large.title": "Diese Nachricht ist zu groß",
		"error.message_too_large.text":  "Was Ihr Browser gesendet hat, ist größer als jede sichere Nachricht dieses Servers, stammt also nicht von uns. Bitten Sie den Absender, die Nachricht erneut zu senden.",

		"error.damaged.title": "Diese sichere Nachricht ist beschädigt",
		"error.damaged.text":  "Der Anhang ist unvollständig angekommen oder wurde unterwegs verändert und lässt sich daher nicht öffnen. Von seinem Inhalt wurde niemandem etwas angezeigt.",
		"error.damaged.again": "Bitten Sie den Absender, die Nachricht erneut zu senden. Falls Sie SecureMessageATT.html in einer anderen App als einem Webbrowser geöffnet haben, speichern Sie die Datei und öffnen Sie sie in einem Browser.",

		"error.envelope_gone.text": "Diese Seite war lange geöffnet, daher wurde die Kopie Ihrer Nachricht auf dieser Website entfernt. Öffnen Sie den Anhang SecureMessageATT.html erneut und wählen Sie „Nachricht lesen“.",

		"error.expired.text": "Sichere Nachrichten sind nur für begrenzte Zeit lesbar, und diese lässt sich nicht mehr öffnen. Niemand kann sie jetzt noch lesen, weder hier noch anderswo.",

		"error.revoked.text": "Diese Nachricht lässt sich nicht mehr öffnen, weil sie zurückgezogen wurde. Wenn Sie sie noch brauchen, wenden Sie sich bitte an den Absender.",

		"error.no_such_page.title":      "Diese Seite gibt es hier nicht",
		"error.no_such_page.text":       "Die Adresse, der Sie gefolgt sind, führt zu keiner Seite dieser Website.",
		"error.no_such_page.attachment": "Um eine sichere Nachricht zu lesen, öffnen Sie den Anhang SecureMessageATT.html ihrer E-Mail erneut und wählen Sie „Nachricht lesen“.",

		"error.wrong_method.title": "Diese Seite lässt sich so nicht verwenden",
		"error.wrong_method.text":  "Ihr Browser hat diese Seite auf eine Weise angefragt, auf die sie nicht antwortet. Gehen Sie zurück und versuchen Sie es noch einmal, oder öffnen Sie den Anhang der E-Mail erneut.",

		"error.cannot_show.title": "Diese Nachricht kann nicht angezeigt werden",
		"error.cannot_show.text":  "Die Nachricht wurde entschlüsselt, aber ihr Inhalt liegt in einer Form vor, die diese Seite nicht anzeigen kann. Bitten Sie den Absender, sie erneut zu senden, am besten ohne besondere Formatierung.",

		"error.no_such_attachment.title": "Anhang nicht gefunden",
		"error.no_such_attachment.text":  "Diese Nachricht hat keinen solchen Anhang.",

		"error.attachment_unreadable.title": "Dieser Anhang lässt sich nicht öffnen",
		"error.attachment_unreadable.text":  "Der Anhang liegt in einer Form vor, die diese Seite nicht senden kann. Bitten Sie den Absender, ihn erneut zu senden.",

		"error.reply_unreadable.title": "Ihre Antwort konnte nicht gelesen werden",
		"error.reply_unreadable.text":  "Das Formular wurde unterwegs beschädigt. Gehen Sie zurück und versuchen Sie es noch einmal.",

		"error.reply_empty.title": "Ihre Antwort ist leer",
		"error.reply_empty.text":  "Gehen Sie zurück, schreiben Sie Ihre Antwort und senden Sie sie erneut.",

		"error.nobody_to_reply.title": "Es gibt keinen Empfänger für eine Antwort",
		"error.nobody_to_reply.text":  "Diese Nachricht nennt keinen Absender, daher lässt sich keine Antwort adressieren. Wenden Sie sich auf anderem Weg an den Absender.",

		"error.too_many_replies.title": "Sie haben viele Antworten gesendet",
		"error.too_many_replies.text":  "Ihre Antwort wurde nicht gesendet: Von diesem Konto wurden zuletzt {Limit} Antworten gesendet, mehr lassen wir in kurzer Zeit nicht zu. Bitte warten Sie {Wait} und senden Sie sie dann erneut.",

		"error.reply_too_large.title": "Ihre Antwort ist zu groß",
		"error.reply_too_large.text":  "Ihre Antwort wurde nicht gesendet: Mit den Anhängen ist sie größer als {Size}. Gehen Sie zurück und hängen Sie weniger oder kleinere Dateien an.",

		"error.reply_not_sent.title": "Ihre Antwort wurde nicht gesendet",
		"error.reply_not_sent.text":  "Der Server konnte Ihre Antwort gerade nicht senden. Es wurde nichts gesendet. Gehen Sie zurück und versuchen Sie es in einigen Minuten noch einmal.",

		"error.cross_origin.title": "Dieses Formular kam von einer anderen Website",
		"error.cross_origin.text":  "Zu Ihrer Sicherheit nimmt diese Seite nur Formulare von dieser Website an. Gehen Sie zurück, laden Sie die Seite neu und versuchen Sie es noch einmal.",

		"error.not_enabled.title": "Das Lesen ist auf diesem Server nicht eingerichtet",
		"error.not_enabled.text":  "Dieser Server verschlüsselt ausgehende E-Mails, aber das Lesen sicherer Nachrichten ist hier nicht eingerichtet. Ihre Nachricht ist sicher und weiterhin verschlüsselt; bitten Sie den Absender, Sie auf anderem Weg zu kontaktieren.",

		"error.store_failed.title": "Bitte versuchen Sie es in einer Minute noch einmal",
		"error.store_failed.text":  "Der Server konnte Ihre Anfrage gerade nicht abschließen. Es ist nichts verloren gegangen. Bitte versuchen Sie es in einer Minute noch einmal.",

		"error.internal.title": "Etwas ist schiefgelaufen",
		"error.internal.text":  "Diese Seite konnte wegen eines Problems auf diesem Server nicht angezeigt werden. Bitte versuchen Sie es in einigen Minuten noch einmal.",
	})
}
