"""The Link page's words, in English and French (the languages Codat's QBO Bank Feeds Link UI offers)."""

LANGUAGES = ("en", "fr")

TEXT = {
    "en": {
        "heading": "Connect to QuickBooks Online Bank Feeds",
        "intro": "{company} would like to send the transactions of your bank accounts to QuickBooks Online.",
        "step_credentials": "Click Get credentials to get a one-time username and password.",
        "step_quickbooks": "In QuickBooks Online, go to Banking, click Link account, find your bank and "
        "enter these credentials.",
        "step_connect": "Pick your accounts and a feed start date, then click Connect.",
        "get_credentials": "Get credentials",
        "revoke_credentials": "Revoke credentials",
        "credentials_explain": "Enter these in QuickBooks Online. They stay valid until you revoke them.",
        "username": "Username",
        "password": "Password",
        "open_quickbooks": "Open QuickBooks",
        "revoked": "Your credentials have been revoked. Get new ones to link another account.",
        "expired_title": "This link has expired",
        "expired_explain": "For your security, this link only works for a limited time.",
        "expired_next_step": "Go back to the app and click Connect again to get a new link.",
        "toggle": "English",
    },
    "fr": {
        "heading": "Connexion aux flux bancaires QuickBooks Online",
        "intro": "{company} souhaite envoyer les opérations de vos comptes bancaires vers QuickBooks Online.",
        "step_credentials": "Cliquez sur Obtenir les identifiants pour recevoir un nom d'utilisateur et un "
        "mot de passe à usage unique.",
        "step_quickbooks": "Dans QuickBooks Online, allez dans Banque, cliquez sur Associer un compte, "
        "trouvez votre banque et saisissez ces identifiants.",
        "step_connect": "Choisissez vos comptes et une date de début du flux, puis cliquez sur Connecter.",
        "get_credentials": "Obtenir les identifiants",
        "revoke_credentials": "Révoquer les identifiants",
        "credentials_explain": "Saisissez-les dans QuickBooks Online. "
        "Ils restent valides jusqu'à leur révocation.",
        "username": "Nom d'utilisateur",
        "password": "Mot de passe",
        "open_quickbooks": "Ouvrir QuickBooks",
        "revoked": "Vos identifiants ont été révoqués. Obtenez-en de nouveaux pour associer un autre compte.",
        "expired_title": "Ce lien a expiré",
        "expired_explain": "Pour votre sécurité, ce lien n'est valable que pendant une durée limitée.",
        "expired_next_step": "Retournez dans l'application et cliquez de nouveau sur Connecter pour obtenir "
        "un nouveau lien.",
        "toggle": "Français",
    },
}


def language(requested: str | None) -> str:
    return requested if requested in LANGUAGES else "en"


def other_language(lang: str) -> str:
    return "fr" if lang == "en" else "en"
