from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from apikeys.keycache import keys_changed
from apikeys.models import ALL_SCOPES, ApiKey, Project, Scope
from apikeys.services import (
    APIKEY_EDITABLE_FIELDS,
    PROJECT_EDITABLE_FIELDS,
    apikey_issue,
    apikey_revoke,
    apikey_update,
    project_create,
    project_soft_delete,
    project_update,
)


class DeletionChangesKeys:
    """Deleting projects or keys can change an authentication outcome: every worker re-reads its keys."""

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        keys_changed()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        keys_changed()


@admin.register(Project)
class ProjectAdmin(DeletionChangesKeys, admin.ModelAdmin):
    list_display = ["name", "id", "retention_days", "rate_limit_per_minute", "created_at", "deleted_at"]
    list_filter = [("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at", "deleted_at"]
    actions = ["soft_delete"]

    def save_model(self, request, obj, form, change):
        """Through the services: a plan change applies from the next request in every worker."""
        if not change:
            created = project_create(name=obj.name, retention_days=obj.retention_days,
                                     rate_limit_per_minute=obj.rate_limit_per_minute)
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        project_update(project=obj, **{field: getattr(obj, field) for field in PROJECT_EDITABLE_FIELDS})

    @admin.action(description="Soft-delete selected projects (keys answer 403)")
    def soft_delete(self, request, queryset):
        for project in queryset:
            project_soft_delete(project=project)
        self.message_user(request, f"Deleted {queryset.count()} project(s).", messages.SUCCESS)

    def has_delete_permission(self, request, obj=None):
        return False  # soft delete only: data stays for audit


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, initial=ALL_SCOPES,
                                       widget=forms.CheckboxSelectMultiple)
    expires_in_days = forms.IntegerField(required=False, min_value=1)

    class Meta:
        model = ApiKey
        fields = ["project", "name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(DeletionChangesKeys, admin.ModelAdmin):
    list_display = ["prefix", "name", "project", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["project", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "project__name"]
    list_select_related = ["project"]
    actions = ["revoke"]
    exclude = ["key_hash"]
    created_template = "admin/apikeys/apikey/created.html"

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["project", "name", "scopes", "expires_in_days"]
        return ["id", "prefix", "project", "name", "scopes", "created_at", "expires_at", "revoked_at",
                "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["id", "prefix", "project", "scopes", "created_at", "revoked_at", "last_used_at"]

    def save_model(self, request, obj, form, change):
        """Through the services: an issued key's raw value stays on the object for `response_add` only."""
        if change:
            apikey_update(key=obj, **{field: getattr(obj, field) for field in APIKEY_EDITABLE_FIELDS})
            return
        issued = apikey_issue(project=form.cleaned_data["project"], name=form.cleaned_data["name"],
                              scopes=form.cleaned_data["scopes"],
                              expires_in_days=form.cleaned_data.get("expires_in_days"))
        obj.pk = issued.key.pk
        obj.refresh_from_db()
        obj.issued_raw_key = issued.raw_key

    def response_add(self, request, obj, post_url_continue=None):
        """The raw key is shown once, on this page itself: never in a message (a cookie) or a log."""
        raw_key = getattr(obj, "issued_raw_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "key": obj,
            "raw_key": raw_key,
        }
        return TemplateResponse(request, self.created_template, context)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            apikey_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead, so the audit trail stays
