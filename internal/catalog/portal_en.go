package catalog

// The portal's own pages (the email step, sign-in, account creation,
// password reset and change, sign-out, home), its layout, and the mail it
// sends the reader. Title, error and notice entries are rendered with
// Text and carry no marks.
func init() {
	add(English, map[string]string{
		// The layout of every page.
		"portal.service":         "Secure messages",
		"portal.signed_in_as":    "Signed in as",
		"portal.change_password": "Change password",
		"portal.sign_out":        "Sign out",
		"portal.back":            "Back to the message",
		"portal.languages":       "Language",
		"portal.continue":        "Continue",

		// The email step.
		"portal.email.title":         "Read your secure message",
		"portal.email.intro":         "To keep this message private, we check that it is yours. Start with your email address.",
		"portal.email.label":         "Your email address",
		"portal.email.hint":          "Use the address this secure message was sent to.",
		"portal.email.remember":      "Remember my email address on this device",
		"portal.email.remember_hint": "Only the address is kept, in this browser, so that next time you go straight to your password. Leave it unticked on a shared computer.",
		"portal.email.invalid":       "That does not look like an email address. Type it as name@example.com.",

		// The sign-in page: password, or a code.
		"portal.signin.title":         "Sign in to read your message",
		"portal.signin.as":            "Signing in as **{Email}**.",
		"portal.signin.not_you":       "Not you? Use another address",
		"portal.signin.have_password": "Have a password?",
		"portal.signin.password":      "Password",
		"portal.signin.button":        "Sign in",
		"portal.signin.first_time":    "First time here, or forgot your password?",
		"portal.signin.wrong":         "That email address and password do not match. Check both and try again. If this is your first time here, or you forgot your password, use a code we email you: see below.",
		"portal.signin.locked":        "Signing in to this address is locked after too many wrong passwords. To unlock it, set a new password with a code we email you: see \"First time here, or forgot your password?\" below.",
		"portal.signin.too_many":      "Too many password tries. For your safety, wait {Wait} before you try again, or reset your password.",
		"portal.duration.minute":      "a minute",
		"portal.duration.minutes":     "{N} minutes",
		"portal.duration.hour":        "an hour",
		"portal.duration.hours":       "{N} hours",
		"portal.duration.days":        "{N} days",

		"portal.code.sent":       "If this message was sent to {Email}, we have emailed that address a code. It can take a minute to arrive; look in the spam folder too.",
		"portal.code.held":       "We have already sent several codes to this address in the last hour, so we did not send another. Use the newest email we sent, or wait an hour and ask again.",
		"portal.code.label":      "Code from the email",
		"portal.code.hint":       "The code has 8 digits and works for 10 minutes; you have {Tries} tries. The first time, you then choose a password; if you forgot yours, we ask your security questions.",
		"portal.code.check":      "Check the code",
		"portal.code.send_new":   "Send a new code",
		"portal.code.explain":    "We email you a code that proves this address is yours. The first time, you then choose a password; if you forgot yours, we ask your security questions.",
		"portal.code.email_me":   "Email me a code",
		"portal.code.wrong_last": "That code does not work, and that was the last try with it. Choose \"Send a new code\" and use the code in the new email.",
		"portal.code.wrong":      "That code does not work. Check that it is from the newest email we sent and type its 8 digits again. You have {Tries} left with this code. If it still does not work, it may be older than 10 minutes: choose \"Send a new code\".",
		"portal.code.tries_one":  "1 try",
		"portal.code.tries_many": "{N} tries",

		// Account creation.
		"portal.register.title":           "Create your account",
		"portal.register.confirmed":       "Your address {Email} is confirmed.",
		"portal.register.choose":          "Choose a password",
		"portal.register.rule_length":     "At least {Min} characters; up to {Max}. Spaces and any letters are fine: a few ordinary words make a good password.",
		"portal.register.rule_list":       "Not a password that is often used or has leaked before; we check a list.",
		"portal.register.questions":       "Two security questions",
		"portal.register.questions_hint":  "If you forget your password, we ask these after emailing you a code. Choose questions whose answers you will remember and others cannot look up. Answers are not case-sensitive.",
		"portal.register.question_n":      "Question {N}",
		"portal.register.choose_question": "Choose a question",
		"portal.register.answer_n":        "Answer {N}",
		"portal.register.create":          "Create my account",
		"portal.register.question_none":   "Question {N}: choose a question from the list.",
		"portal.register.question_same":   "Question {N} is the same as question {Other}. Choose a different question for question {N}.",
		"portal.register.answer_none":     "Answer {N}: answer each security question (at least two characters).",
		"portal.register.kept":            "{Problem} Your questions and answers are kept below.",

		"portal.password.new":       "New password",
		"portal.password.again":     "The same password again",
		"portal.password.current":   "Current password",
		"portal.password.mismatch":  "The two passwords are not the same. Type the new password again in both password fields.",
		"portal.password.bad_chars": "This password contains characters that cannot be used. Choose another.",
		"portal.password.too_short": "Use at least {Min} characters.",
		"portal.password.too_long":  "Use at most {Max} characters.",
		"portal.password.repeated":  "A password made of one character repeated is too easy to guess. Choose another.",
		"portal.password.common":    "This password is on a list of passwords that are often used or leaked. Choose another.",

		// The security questions, by their stored index: only append.
		"portal.question.0": "What was the name of your first pet?",
		"portal.question.1": "In what city or town were you born?",
		"portal.question.2": "What is your mother's maiden name?",
		"portal.question.3": "What was the name of your first school?",
		"portal.question.4": "What was the make and model of your first car?",
		"portal.question.5": "What is the first name of your oldest cousin?",
		"portal.question.6": "In what city or town did your parents meet?",
		"portal.question.7": "What was the name of the street you grew up on?",
		"portal.question.8": "What was your childhood nickname?",
		"portal.question.9": "What was the first name of your first manager?",

		// A password reset.
		"portal.answers.title":    "Answer your security questions",
		"portal.answers.chosen":   "These are the questions you chose when you created your account.",
		"portal.answers.case":     "Answers are not case-sensitive, and extra spaces do not matter; the spelling does.",
		"portal.answers.tries":    "After {Tries} wrong sets of answers this reset ends, and you ask for a new code to start again.",
		"portal.answers.forgot":   "If you no longer know the answers, tell the person who sent you the message: their administrator can remove your account, and you then create a new one with a code.",
		"portal.answers.question": "Security question",
		"portal.answers.wrong":    "At least one answer is not right. Answers are not case-sensitive; check the spelling.",

		"portal.newpassword.reset_title":  "Choose a new password",
		"portal.newpassword.change_title": "Change your password",
		"portal.newpassword.rules":        "At least {Min} characters, up to {Max}; not a password that is often used or has leaked.",
		"portal.newpassword.save":         "Save the new password",
		"portal.newpassword.wrong":        "Your current password is not right.",
		"portal.newpassword.done_title":   "Your password was changed",
		"portal.newpassword.done":         "Your new password works from now on. Every other browser signed in to your account was signed out, and we emailed you a note.",

		"portal.signout.title": "You are signed out",
		"portal.signout.words": "To read a secure message again, open its SecureMessageATT.html attachment and choose \"Click to read message\".",

		"portal.home.about":   "This is the secure message service of this mail server. People who use it send encrypted email: you receive a short notice with an attachment named SecureMessageATT.html, and you read the message here.",
		"portal.home.how":     "To read one, open that attachment and choose \"Click to read message\". The first time, you give your email address, type the code we email to it and choose a password; after that your password is enough.",
		"portal.home.genuine": "A genuine message sends you to an address that starts with {PortalURL}/ and nowhere else. If a page asks for your password at any other address, close it. We never ask for your password by email.",

		// The mail the reader gets.
		"text.mail.code_subject":         "Your code to read a secure message",
		"text.mail.code":                 "Your code is:\n\n    {Code}\n\nEnter it on the page where you gave your address. It works for 10 minutes.\n\nIf you did not ask for it, ignore this email: without the code nobody can create an account for your address.\n",
		"text.mail.reset_code_subject":   "Your code for secure messages",
		"text.mail.reset_code":           "Your code is:\n\n    {Code}\n\nYou need it only if you forgot your password: enter it under \"First time here, or forgot your password?\" on the page where you gave your address. It works for 10 minutes. If you know your password, sign in with it and ignore this email.\n\nIf you did not ask for it, ignore this email; nothing changes without the code.\n",
		"text.mail.password_subject":     "The password of your secure messages account was changed",
		"text.mail.password_was_reset":   "The password of your account for secure messages at\n{PortalURL}/\nwas reset on {When}. Every other browser signed in to the account was signed out.\n\nIf this was you, there is nothing to do. If it was not, reset your password now from the sign-in page and tell the person who sends you secure messages.\n",
		"text.mail.password_was_changed": "The password of your account for secure messages at\n{PortalURL}/\nwas changed on {When}. Every other browser signed in to the account was signed out.\n\nIf this was you, there is nothing to do. If it was not, reset your password now from the sign-in page and tell the person who sends you secure messages.\n",
	})
}
