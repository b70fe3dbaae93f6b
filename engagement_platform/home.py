"""The page at `/`: where a person who opens the server's address can go next."""

from django.http import HttpResponse
from django.views.decorators.http import require_http_methods

HOME_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Engagement platform</title></head>
<body>
<main>
<h1>Engagement platform</h1>
<p>Render engagement (documents) and engagement reports (email) over one API under <code>/v1</code>.</p>
<ul>
<li><a href="/docs">API documentation</a> (the OpenAPI schema is at <a href="/v1/schema">/v1/schema</a>)</li>
<li><a href="/admin/">Operators' console</a></li>
</ul>
</main>
</body>
</html>
"""


@require_http_methods(["GET", "HEAD"])
def home(request):
    return HttpResponse(HOME_PAGE, content_type="text/html; charset=utf-8")
