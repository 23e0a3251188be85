"""Notice templates (Korean and English) and their rendering; sent by onboarding/mail/mailer.py."""

from __future__ import annotations

from string import Template

from onboarding.domain.models import Language

# template -> language -> (subject, body). `$name` placeholders are filled from the notice's
# context; a missing one is an error, not a silent blank.
TEMPLATES: dict[str, dict[Language, tuple[str, str]]] = {
    "application_received": {
        "ko": ("[Open API] 이용 신청이 접수되었습니다 ($application_id)",
               "$organisation 님의 이용 신청($service)이 접수되었습니다. 사전검증이 시작됩니다."),
        "en": ("[Open API] Application received ($application_id)",
               "The application of $organisation for $service has been received. "
               "Pre-verification starts now."),
    },
    "changes_requested": {
        "ko": ("[Open API] 신청 내용 보완 요청 ($application_id)",
               "$step 단계에서 보완이 요청되었습니다.\n사유: $note\n보완 후 다시 제출해 주십시오."),
        "en": ("[Open API] Changes requested ($application_id)",
               "Changes were requested at the $step step.\nReason: $note\n"
               "Please resubmit the amended details."),
    },
    "more_testing_requested": {
        "ko": ("[Open API] 샌드박스 추가 테스트 요청 ($application_id)",
               "업무적합성 검증에서 추가 테스트가 요청되었습니다.\n사유: $note"),
        "en": ("[Open API] More sandbox testing requested ($application_id)",
               "Business-suitability verification asks for more testing.\nReason: $note"),
    },
    "application_rejected": {
        "ko": ("[Open API] 신청이 반려되었습니다 ($application_id)",
               "$step 단계에서 신청이 반려되었습니다.\n사유: $note"),
        "en": ("[Open API] Application rejected ($application_id)",
               "The application was rejected at the $step step.\nReason: $note"),
    },
    "application_withdrawn": {
        "ko": ("[Open API] 신청이 철회되었습니다 ($application_id)",
               "신청이 철회되었습니다. 발급된 API 키는 모두 폐기되었습니다."),
        "en": ("[Open API] Application withdrawn ($application_id)",
               "The application was withdrawn. Every API key issued for it has been revoked."),
    },
    "application_lapsed": {
        "ko": ("[Open API] 신청이 만료되었습니다 ($application_id)",
               "$days일 동안 진행이 없어 신청이 만료되었습니다. 발급된 API 키는 폐기되었습니다."),
        "en": ("[Open API] Application lapsed ($application_id)",
               "The application lapsed after $days days without a response from the applicant. "
               "Any API key issued for it has been revoked."),
    },
    "reminder": {
        "ko": ("[Open API] 처리 대기 알림: $step ($application_id)",
               "$organisation 님의 신청이 $since 부터 $waiting_on 의 처리를 기다리고 있습니다."),
        "en": ("[Open API] Reminder: $step is waiting ($application_id)",
               "The application of $organisation has been waiting on $waiting_on since $since."),
    },
    "escalation": {
        "ko": ("[Open API] 처리 지연 보고: $step ($application_id)",
               "$organisation 님의 신청이 $since 부터 $waiting_on 의 처리를 기다리고 있어 "
               "상위 책임자에게 보고합니다."),
        "en": ("[Open API] Escalation: $step overdue ($application_id)",
               "The application of $organisation has been waiting on $waiting_on since $since "
               "and is escalated."),
    },
    "api_key_delivery": {
        "ko": ("[Open API] $environment API 키 발급 ($application_id)",
               "$environment 환경 API 키가 발급되었습니다. 이 키는 이번 한 번만 안내되며 "
               "플랫폼에는 저장되지 않습니다.\n\nAPI 키: $api_key\n허용 API: $scopes\n"
               "만료일: $expires_at"),
        "en": ("[Open API] Your $environment API key ($application_id)",
               "Your $environment API key has been issued. It is shown this once and the "
               "platform does not keep it.\n\nAPI key: $api_key\nAPIs: $scopes\n"
               "Expires: $expires_at"),
    },
    "member_notice_new_user": {
        "ko": ("[Open API 회원사 공지] 신규 이용기관 승인 ($organisation)",
               "$organisation 님이 이용기관으로 최종 승인되어 다음 API의 샌드박스 이용을 "
               "시작합니다: $apis"),
        "en": ("[Open API member notice] New user organisation approved ($organisation)",
               "$organisation has been approved as a user organisation and starts using these "
               "APIs in the sandbox: $apis"),
    },
    "member_notice_production": {
        "ko": ("[Open API 회원사 공지] 운영 서비스 개시 ($organisation)",
               "$organisation 님의 서비스($service)가 다음 API로 운영 환경에서 개시됩니다: $apis"),
        "en": ("[Open API member notice] Service launched in production ($organisation)",
               "$organisation launches $service in production using: $apis"),
    },
    "publication_received": {
        "ko": ("[Open API] API 등록 신청이 접수되었습니다 ($application_id)",
               "$organisation 님의 API($api) 등록 신청이 접수되었습니다. 사전협의가 시작됩니다."),
        "en": ("[Open API] API publication received ($application_id)",
               "The application of $organisation to publish $api has been received. "
               "The pre-review of integration method and specification starts now."),
    },
    "api_more_testing_requested": {
        "ko": ("[Open API] API 추가 테스트 요청 ($application_id)",
               "API 테스트 결과 검토에서 추가 테스트가 요청되었습니다.\n사유: $note"),
        "en": ("[Open API] More API testing requested ($application_id)",
               "The review of your API test results asks for more testing.\nReason: $note"),
    },
    "api_published": {
        "ko": ("[Open API] API가 $stage 환경에 게시되었습니다 ($application_id)",
               "$api API(명세 버전 $version)가 $stage 환경 카탈로그에 게시되었습니다."),
        "en": ("[Open API] Your API is published in $stage ($application_id)",
               "$api (specification version $version) is now in the $stage catalogue."),
    },
    "member_notice_api_published": {
        "ko": ("[Open API 회원사 공지] 신규 API 게시: $api ($stage)",
               "$organisation 님의 $api API(명세 버전 $version)가 $stage 환경에 게시되었습니다."),
        "en": ("[Open API member notice] New API in $stage: $api",
               "$api by $organisation (specification version $version) is now in the $stage "
               "catalogue."),
    },
    "publication_withdrawn": {
        "ko": ("[Open API] API 등록이 철회되었습니다 ($application_id)",
               "$api API 등록 신청이 철회되었습니다. 카탈로그에서 제외되었습니다."),
        "en": ("[Open API] API publication withdrawn ($application_id)",
               "The publication of $api was withdrawn; it has left the catalogue."),
    },
    "publication_lapsed": {
        "ko": ("[Open API] API 등록 신청이 만료되었습니다 ($application_id)",
               "$days일 동안 진행이 없어 $api API 등록 신청이 만료되었습니다."),
        "en": ("[Open API] API publication lapsed ($application_id)",
               "The publication of $api lapsed after $days days without a response from the "
               "provider."),
    },
    "application_refused": {
        "ko": ("[Open API] 신청이 접수되지 않았습니다 ($application_id)",
               "신청 요건을 충족하지 않아 신청이 접수되지 않았습니다. 아래 사항을 바로잡아 "
               "다시 제출해 주십시오.\n$refusals"),
        "en": ("[Open API] Application refused ($application_id)",
               "The application does not meet the platform's rules and was not admitted. "
               "Correct the following and submit it again:\n$refusals"),
    },
    "keys_revoked_process_closed": {
        "ko": ("[Open API] API 키가 폐기되었습니다 ($application_id)",
               "신청의 처리 절차가 운영 전환 없이 종료되어($closed) 다음 API 키를 "
               "폐기했습니다: $keys"),
        "en": ("[Open API] API keys revoked ($application_id)",
               "The application's process ended without reaching production ($closed), so "
               "these API keys were revoked: $keys"),
    },
    "application_in_production": {
        "ko": ("[Open API] 운영 전환 완료 ($application_id)",
               "서비스 계약이 등록되고 운영 API 키가 발급되었습니다. 서비스 개시를 축하드립니다."),
        "en": ("[Open API] Your service is in production ($application_id)",
               "The service contract is recorded and the production API key issued."),
    },
}


def render(template: str, language: Language, context: dict[str, str]) -> tuple[str, str]:
    subject, body = TEMPLATES[template][language]
    return Template(subject).substitute(context), Template(body).substitute(context)
