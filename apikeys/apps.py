from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apikeys"
    verbose_name = "Projects and API keys"

    def ready(self):
        from apikeys import checks  # noqa: F401  (registers the system checks)
