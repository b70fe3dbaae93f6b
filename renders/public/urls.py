"""Public pages reached without a key: the token in the path is the credential."""

from django.urls import path

from renders.public import views

urlpatterns = [
    path("s/<str:token>", views.share_page, name="share-page"),
    path("s/<str:token>/file", views.share_file, name="share-file"),
    path("s/<str:token>/download", views.share_download, name="share-download"),
    path("s/<str:token>/print", views.share_print, name="share-print"),
]
