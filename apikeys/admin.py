from django import forms
from django.contrib import admin, messages
from django.utils.safestring import mark_safe

from apikeys.models import ALL_SCOPES, ApiKey, Project, Scope
from apikeys.services import apikey_issue, apikey_revoke, project_soft_delete
from reports.charts import project_traffic_chart


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "retention_days", "rate_limit_per_minute", "created_at", "deleted_at"]
    list_filter = [("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at", "deleted_at", "traffic_chart"]
    actions = ["soft_delete"]

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "traffic_chart"]
        return fields + ["traffic_chart"] if obj is not None else fields

    @admin.display(description="Message traffic")
    def traffic_chart(self, obj):
        return mark_safe(project_traffic_chart(project=obj))  # built from numbers and escaped text only

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
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "project", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["project", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "project__name"]
    list_select_related = ["project"]
    actions = ["revoke"]
    exclude = ["key_hash"]

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
        if change:
            return super().save_model(request, obj, form, change)
        issued = apikey_issue(project=form.cleaned_data["project"], name=form.cleaned_data["name"],
                              scopes=form.cleaned_data["scopes"],
                              expires_in_days=form.cleaned_data.get("expires_in_days"))
        obj.pk = issued.key.pk
        obj.refresh_from_db()
        self.message_user(request, f"New API key (shown only this once): {issued.raw_key}", messages.WARNING)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            apikey_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead, so the audit trail stays
