from django.urls import path

from reports.api import views

urlpatterns = [
    path("messages/events", views.MessageEventsView.as_view(), name="message-events"),
    path("reports/engagement", views.EngagementReportView.as_view(), name="engagement-report"),
]
