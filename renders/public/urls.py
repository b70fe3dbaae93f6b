"""Public pages reached without a key: the token in the path is the credential."""

from django.urls import path

from renders.public import views

urlpatterns = [
    path("s/<str:token>", views.share_page, name="share-page"),
    path("s/<str:token>/file", views.share_file, name="share-file"),
    path("s/<str:token>/download", views.share_download, name="share-download"),
    path("s/<str:token>/print", views.share_print, name="share-print"),
    path("s/<str:token>/pages/<int:number>", views.share_page_image, name="share-page-image"),
    path("s/<str:token>/activity", views.share_activity, name="share-activity"),
    path("t/<str:token>.gif", views.email_open_pixel, name="email-pixel"),
    path("c/<str:token>", views.email_click, name="email-click"),
]
